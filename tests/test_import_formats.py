"""Each import format read from files written the way other tools write them (not only our exports): the pixels
each shape stands for, the label names and colours, detection of the format, and the shapes left out."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from mpae_core.annotation import AnnotationProject
from mpae_core.annotation.importers import ImportSourceError, import_annotations, locate, open_source
from mpae_core.annotation.importers.rasterise import centre_polygon_mask, edge_polygons_mask, fill_polygon_mask
from mpae_core.annotation.importers.label_maps import VOC_CLASSES, voc_colormap
from mpae_core.annotation.labels import IGNORE_LABEL
from mpae_core.opencv import import_opencv

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

W, H = 30, 20


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.png", "c.png"):
        Image.new("RGB", (W, H), (50, 90, 120)).save(folder / name)
    return folder


def imported(photos, source_path, fmt=None, project_dir=None, **kwargs):
    """Import into a fresh project; returns (project, report)."""
    project = AnnotationProject.create(photos, recursive=True, project_dir=project_dir)
    report = import_annotations(open_source(source_path, fmt)[0], project, **kwargs)
    return project, report


def names_of(project, relpath):
    """The label map as names (background, don't care, or a label's name) for readable expectations."""
    values = project.label_map(relpath)
    table = project.parts
    return np.vectorize(lambda v: table.value_name(int(v)))(values)


# ----- rasterisers --------------------------------------------------------------------------------------------------
def test_shapes_drawn_on_their_box_equal_shapes_drawn_on_the_whole_image():
    rng = np.random.default_rng(3)
    height, width = 23, 31
    for _ in range(200):
        points = rng.uniform(-6, 38, (int(rng.integers(3, 8)), 2))
        if rng.random() < 0.5:
            points = np.round(points)
        full = Image.new("L", (width, height), 0)
        ImageDraw.Draw(full).polygon([tuple(p) for p in points], fill=1, outline=1)
        mine = np.zeros((height, width), bool)
        drawn = centre_polygon_mask(points, height, width)
        if drawn is not None:
            (x0, y0, x1, y1), mask = drawn
            mine[y0:y1, x0:x1] = mask
        np.testing.assert_array_equal(mine, np.asarray(full, bool))

        whole = np.zeros((height, width), np.uint8)
        import_opencv().fillPoly(whole, [np.trunc(points).astype(np.int32)], 1)
        mine[:] = False
        drawn = fill_polygon_mask(np.trunc(points), height, width)
        if drawn is not None:
            (x0, y0, x1, y1), mask = drawn
            mine[y0:y1, x0:x1] = mask
        np.testing.assert_array_equal(mine, whole.astype(bool))

        flat = points.ravel().tolist()
        whole = mask_utils.decode(mask_utils.frPyObjects([flat], height, width)[0]).astype(bool)
        mine[:] = False
        drawn = edge_polygons_mask([flat], height, width)
        if drawn is not None:
            (x0, y0, x1, y1), mask = drawn
            mine[y0:y1, x0:x1] = mask
        np.testing.assert_array_equal(mine, whole)


# ----- COCO ---------------------------------------------------------------------------------------------------------
def test_coco_rle_polygons_overlaps_colours_and_unknown_images(photos, tmp_path):
    square = np.zeros((H, W), np.uint8)
    square[2:10, 4:12] = 1
    counts = mask_utils.encode(np.asfortranarray(square))
    uncompressed = {"size": [H, W], "counts": [int(c) for c in _runs(square)]}
    coco = {
        "images": [{"id": 5, "file_name": "photos/a.jpg", "width": W, "height": H},
                   {"id": 9, "file_name": "b.png", "width": W, "height": H},
                   {"id": 11, "file_name": "c.png", "width": W + 1, "height": H},
                   {"id": 12, "file_name": "elsewhere/zebra.jpg", "width": W, "height": H}],
        "categories": [{"id": 3, "name": "wing", "color": "#102030"}, {"id": 7, "name": "tail", "color": [1, 2, 3]},
                       {"id": 8, "name": "unused"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 3, "iscrowd": 1, "segmentation": uncompressed},
            {"id": 2, "image_id": 5, "category_id": 7, "segmentation": [[8, 6, 20, 6, 20, 16, 8, 16]]},  # covers
            {"id": 3, "image_id": 9, "category_id": 3,
             "segmentation": {"size": [H, W], "counts": counts["counts"].decode()}},
            {"id": 4, "image_id": 11, "category_id": 3, "segmentation": [[0, 0, 5, 0, 5, 5]]}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    project, report = imported(photos, tmp_path / "instances.json")
    assert sorted(report.imported) == ["a.jpg", "sub/b.png"]
    assert [s.reason for s in report.failed if "c.png" in s.name][0].endswith(
        "is 31×20 but the photo is 30×20 (EXIF orientation applied); it belongs to another version of the photo, so "
        "it was not imported.")
    assert any("'elsewhere/zebra.jpg' is not an image of this project" in s.reason for s in report.failed)
    names = names_of(project, "a.jpg")
    tail = np.zeros((H, W), bool)
    tail[6:16, 8:20] = True  # pixel-edge polygon: the pixels whose centres are inside
    assert (names[tail] == "tail").all()
    assert (names[(square == 1) & ~tail] == "wing").all() and (names[(square == 0) & ~tail] == "background").all()
    assert (names_of(project, "sub/b.png") == np.where(square == 1, "wing", "background")).all()
    assert [(u.name, u.color) for u in project.parts.user_labels][:2] == [("wing", (16, 32, 48)), ("tail", (1, 2, 3))]
    assert project.parts.user_labels[2].name == "unused"


def _runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major, starting with zeros)."""
    flat = mask.T.ravel()
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] if flat[0] else []) + runs


# ----- labelme ------------------------------------------------------------------------------------------------------
def test_labelme_shapes_in_file_order_with_ignore_and_left_out_kinds(photos, tmp_path):
    folder = tmp_path / "labelme"
    folder.mkdir()
    bitmap = np.zeros((3, 4), np.uint8)
    bitmap[1, 1:3] = 1
    buffer = io.BytesIO()
    Image.fromarray(bitmap * 255).save(buffer, format="PNG")
    shapes = [
        {"label": "wing", "points": [[1, 1], [10, 1], [10, 8], [1, 8]], "shape_type": "polygon"},
        {"label": "tail", "points": [[5, 5], [7, 6]], "shape_type": "rectangle"},  # over the wing
        {"label": "__ignore__", "points": [[0, 0], [0, 0], [0, 0]], "shape_type": "polygon"},
        {"label": "eye", "points": [[20, 10], [22, 10]], "shape_type": "circle"},
        {"label": "wing", "points": [[3, 15], [6, 17]], "shape_type": "mask", "mask": base64.b64encode(
            buffer.getvalue()).decode()},
        {"label": "whisker", "points": [[0, 19], [29, 19]], "shape_type": "line"},
        {"label": "", "points": [[0, 0], [1, 0], [1, 1]], "shape_type": "polygon"}]
    document = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": "../photos/sub/b.png",
                "imageData": None, "imageHeight": H, "imageWidth": W}
    (folder / "whatever.json").write_text(json.dumps(document))
    project, report = imported(photos, folder)
    assert report.imported == ["sub/b.png"]  # found through imagePath
    names = names_of(project, "sub/b.png")
    assert (names[1:9, 1:11][names[1:9, 1:11] != "tail"] == "wing").all()
    assert (names[5:7, 5:8] == "tail").all() and names[0, 0] == "don't care"
    assert names[10, 20] == "eye" and names[10, 18] == "eye" and names[10, 17] == "background"
    assert (names[16, 4:6] == "wing").all() and names[16, 3] == "background" and names[15, 4] == "background"
    assert names[19, 10] == "background"  # a line marks no region
    assert report.notes == [f"'{folder / 'whatever.json'}': 1 line shape left out; 1 unlabelled shape left out."]
    assert [u.name for u in project.parts.user_labels] == ["wing", "tail", "eye"]


# ----- YOLO ---------------------------------------------------------------------------------------------------------
def test_yolo_layout_with_subsets_and_bad_lines(photos, tmp_path):
    root = tmp_path / "dataset"
    (root / "labels" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "names": {0: "wing",
                                                                                                     1: "tail"}}))
    (root / "labels" / "train" / "a.txt").write_text("1 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n")
    (root / "labels" / "train" / "c.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n2 0.1 0.1 0.2 0.2 0.3 0.1\n")
    (root / "labels" / "train" / "b.txt").write_text("")  # a background image
    project, report = imported(photos, root)
    assert sorted(report.imported) == ["a.jpg", "sub/b.png"]
    names = names_of(project, "a.jpg")
    expected = np.zeros((H, W), bool)
    expected[2:11, 3:16] = True  # x: trunc(0.1 * 30) = 3 .. trunc(0.5 * 30) = 15; y: 2 .. 10, outline included
    assert (names[expected] == "tail").all() and (names[~expected] == "background").all()
    assert (names_of(project, "sub/b.png") == "background").all() and project.record("sub/b.png").has_edits
    reason = report.failed[0].reason
    assert "Line 2 of" in reason and "class 2, but data.yaml names 2 classes" in reason
    assert [u.name for u in project.parts.user_labels] == ["wing", "tail"]


# ----- VOC ----------------------------------------------------------------------------------------------------------
def test_voc_colour_masks_with_the_pascal_classes_and_index_masks_with_a_labelmap(photos, tmp_path):
    colors = voc_colormap(len(VOC_CLASSES))
    voc = tmp_path / "VOC2012"
    (voc / "SegmentationClass").mkdir(parents=True)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[2:6, 2:6] = colors[VOC_CLASSES.index("cat")]
    rgb[10:12, :] = (224, 224, 192)  # void
    Image.fromarray(rgb).save(voc / "SegmentationClass" / "a.png")
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(voc / "SegmentationClass" / "c.png")
    project, report = imported(photos, voc)
    assert report.imported == ["a.jpg"] and "has pixels of colour (1, 2, 3)" in report.failed[0].reason
    names = names_of(project, "a.jpg")
    assert (names[2:6, 2:6] == "cat").all() and (names[10:12] == "don't care").all() and names[0, 0] == "background"
    assert project.parts.user_labels[VOC_CLASSES.index("cat") - 1].color == (64, 0, 0)

    cvat = tmp_path / "cvat_voc"
    (cvat / "SegmentationClass" / "sub").mkdir(parents=True)
    (cvat / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\nwing:250,50,83::\n"
                                       "tail:0,0,255::\n")
    indices = np.zeros((H, W), np.uint8)
    indices[:, :5] = 2
    indices[0] = 255
    mask = Image.fromarray(indices, mode="P")
    mask.putpalette([0, 0, 0, 250, 50, 83, 0, 0, 255] + [0] * 759)
    mask.save(cvat / "SegmentationClass" / "sub" / "b.png")
    project, report = imported(photos, cvat / "labelmap.txt", project_dir=tmp_path / "second")  # names the folder
    assert report.imported == ["sub/b.png"]
    names = names_of(project, "sub/b.png")
    assert (names[1:, :5] == "tail").all() and (names[0] == "don't care").all() and names[5, 10] == "background"
    assert [(u.name, u.color) for u in project.parts.user_labels] == [("wing", (250, 50, 83)), ("tail", (0, 0, 255))]


# ----- CVAT ---------------------------------------------------------------------------------------------------------
CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels>
    <label><name>wing</name><color>#ff0000</color><type>any</type><attributes/></label>
    <label><name>tail</name><color>#00ff00</color><type>any</type><attributes/></label>
  </labels></task></meta>
  <image id="0" name="sub/b.png" width="30" height="20">
    <box label="tail" occluded="0" xtl="2" ytl="2" xbr="10" ybr="8" z_order="1"></box>
    <polygon label="wing" occluded="0" points="0,0;6,0;6,6;0,6" z_order="0"></polygon>
    <mask label="wing" occluded="0" rle="1,2,3,2" left="20" top="10" width="4" height="2" z_order="0"></mask>
    <polyline label="wing" occluded="0" points="0,19;29,19" z_order="0"></polyline>
  </image>
  <image id="1" name="a.jpg" width="30" height="20">
    <polygon label="eye" occluded="0" points="0,0;6,0;6,6" z_order="0"></polygon>
  </image>
</annotations>
"""


def test_cvat_boxes_polygons_masks_by_z_order(photos, tmp_path):
    (tmp_path / "cvat").mkdir()
    (tmp_path / "cvat" / "annotations.xml").write_text(CVAT_XML)
    project, report = imported(photos, tmp_path / "cvat")
    assert report.imported == ["sub/b.png"]
    assert "label 'eye', which the file's <meta> does not list" in report.failed[0].reason
    names = names_of(project, "sub/b.png")
    assert (names[2:8, 2:10] == "tail").all()  # the box is drawn above the polygon (z_order 1)
    assert (names[0:2, 0:6] == "wing").all() and (names[2:6, 0:2] == "wing").all() and names[8, 1] == "background"
    assert names[10, 21] == names[10, 22] == names[11, 23] == "wing"  # run lengths 1 off, 2 on, 3 off, 2 on
    assert names[10, 20] == names[10, 23] == names[11, 21] == "background"
    assert report.notes == ["'annotations.xml' image 'sub/b.png': 1 polyline shape left out."]
    assert [(u.name, u.color) for u in project.parts.user_labels] == [("wing", (255, 0, 0)), ("tail", (0, 255, 0))]


# ----- ours, without colours ------------------------------------------------------------------------------------
def test_png_masks_with_only_labels_txt_and_unknown_values(photos, tmp_path):
    src = tmp_path / "labels"
    (src / "masks").mkdir(parents=True)
    (src / "labels.txt").write_text("background\nwing\n")
    gray = np.zeros((H, W), np.uint8)
    gray[5] = 1
    gray[6] = 255
    Image.fromarray(gray).save(src / "masks" / "a.png")
    gray[7] = 3
    Image.fromarray(gray).save(src / "masks" / "c.png")
    project, report = imported(photos, src, "png")
    assert report.imported == ["a.jpg"] and "has pixels of value 3, which no label" in report.failed[0].reason
    values = project.label_map("a.jpg")
    assert (values[6] == IGNORE_LABEL).all() and project.parts.value_name(int(values[5, 0])) == "wing"


# ----- detection ----------------------------------------------------------------------------------------------------
def test_detection_prefers_the_most_complete_format_and_says_what_else_is_there(tmp_path):
    from mpae_core.annotation.export import export_indices
    from mpae_core.annotation.parts import ExportLabel

    photos = tmp_path / "p"
    photos.mkdir()
    Image.new("RGB", (4, 3)).save(photos / "x.png")
    out = tmp_path / "out"
    export_indices([("x.png", np.ones((3, 4), np.uint8))], [ExportLabel(1, "wing", (1, 2, 3))], out,
                   formats="png,coco,yolo,labelme,cvat,voc", images_dir=photos)
    assert locate(out) == ("png", out, ["voc", "cvat", "coco", "labelme", "yolo"])
    assert locate(out, "yolo")[:2] == ("yolo", out / "yolo")
    assert locate(out, "labelme")[:2] == ("labelme", out / "labelme")
    assert locate(out / "coco.json")[:2] == ("coco", out / "coco.json")
    assert locate(out / "labelme" / "x.json")[:2] == ("labelme", out / "labelme" / "x.json")
    assert locate(out / "cvat" / "annotations.xml")[0] == "cvat" and locate(out / "cvat")[0] == "cvat"
    assert locate(out / "yolo" / "data.yaml")[0] == "yolo" and locate(out / "voc")[0] == "voc"
    assert locate(out / "labels.txt")[:2] == ("png", out)
    with pytest.raises(ImportSourceError, match="holds no annotations this app reads"):
        locate(photos)
    with pytest.raises(ImportSourceError, match="is not an annotation file"):
        locate(photos / "x.png")
    with pytest.raises(ImportSourceError, match="Unknown import format 'tiff'"):
        locate(out, "tiff")
    with pytest.raises(ImportSourceError, match="does not exist"):
        locate(tmp_path / "missing")
    (tmp_path / "bad.json").write_text('{"images": [], "categories": [{"name": 1}]}')
    with pytest.raises(ImportSourceError, match="not a valid COCO file"):
        open_source(tmp_path / "bad.json")


# ----- the formats' own readers agree (optional extra: labelme, Ultralytics) ---------------------------------------
def random_shapes(seed: int, count: int = 40):
    """Polygons with fractional and whole corners (some leaving the image), rectangles and circles."""
    rng = np.random.default_rng(seed)
    shapes = []
    for i in range(count):
        kind = ("polygon", "polygon", "rectangle", "circle")[i % 4]
        n = int(rng.integers(3, 9)) if kind == "polygon" else 2
        points = rng.uniform(-3, W + 3, (n, 2)) * [1, H / W]
        if i % 3 == 0:
            points = np.round(points)
        shapes.append({"label": f"l{i % 5}", "points": points.tolist(), "group_id": None, "description": "",
                       "shape_type": kind, "flags": {}})
    return shapes


def test_labelme_itself_draws_the_same_pixels_for_any_shapes(photos, tmp_path):
    from test_export_formats import needs, run_consumer

    needs("labelme")
    folder = tmp_path / "lm"
    folder.mkdir()
    files = {}
    for i, rel in enumerate(("a.jpg", "c.png")):
        document = {"version": "5.5.0", "flags": {}, "shapes": random_shapes(i), "imagePath": f"../photos/{rel}",
                    "imageData": None, "imageHeight": H, "imageWidth": W}
        files[rel] = str(folder / f"{rel}.json")
        (folder / f"{rel}.json").write_text(json.dumps(document))
    project, report = imported(photos, folder)
    assert sorted(report.imported) == ["a.jpg", "c.png"]
    value = {u.name: u.index + 1 for u in project.parts.user_labels}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"files": files, "value": value}))
    result = run_consumer(f"""
        import json
        from labelme.utils import shapes_to_label
        spec = json.load(open({str(spec)!r}))
        out = {{}}
        for rel, path in spec["files"].items():
            shapes = json.load(open(path))["shapes"]
            cls, _ = shapes_to_label(({H}, {W}), shapes, spec["value"])
            out[rel] = cls.tolist()
        print(json.dumps(out))
    """, tmp_path)
    for rel in files:
        np.testing.assert_array_equal(project.parts.to_export(project.label_map(rel)), np.array(result[rel]))


def test_ultralytics_itself_draws_the_same_pixels_for_any_polygons(photos, tmp_path):
    from test_export_formats import needs, run_consumer

    needs("ultralytics")
    root = tmp_path / "yolo"
    (root / "labels").mkdir(parents=True)
    (root / "data.yaml").write_text("names: [a, b, c]\n")
    rng = np.random.default_rng(7)
    lines = {}
    for rel in ("a", "c"):
        rows = []
        for i in range(25):
            xy = rng.uniform(-0.05, 1.05, (int(rng.integers(3, 9)), 2))
            if i % 3 == 0:  # corners on pixel centres, as our exports write them
                xy = (np.floor(xy * (W, H)) + 0.5) / (W, H)
            rows.append(f"{i % 3} " + " ".join(f"{v:.6f}" for v in xy.ravel()))
        lines[rel] = rows
        (root / "labels" / f"{rel}.txt").write_text("\n".join(rows) + "\n")
    project, report = imported(photos, root)
    assert sorted(report.imported) == ["a.jpg", "c.png"]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(lines))
    result = run_consumer(f"""
        import json, numpy as np
        from ultralytics.data.utils import polygon2mask
        out = {{}}
        for rel, rows in json.load(open({str(spec)!r})).items():
            drawn = np.zeros(({H}, {W}), np.uint8)
            for row in rows:
                values = row.split()
                pixels = np.array(values[1:], np.float32).reshape(-1, 2) * np.array([{W}, {H}], np.float32)
                drawn[polygon2mask(({H}, {W}), [pixels.reshape(-1)], color=1).astype(bool)] = int(values[0]) + 1
            out[rel] = drawn.tolist()
        print(json.dumps(out))
    """, tmp_path)
    for rel, relpath in (("a", "a.jpg"), ("c", "c.png")):
        np.testing.assert_array_equal(project.parts.to_export(project.label_map(relpath)), np.array(result[rel]))
