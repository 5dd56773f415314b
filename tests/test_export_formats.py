"""The polygon, YOLO, labelme, CVAT and VOC exports: pixel-exact outlines, the layouts, and each consumer's own reader.

The consumers (labelme, Ultralytics) come with the optional ``formats-check`` extra (``pip install -e
'.[dev,formats-check]'``, which CI runs); their checks run in a subprocess, because labelme imports PyQt5 and OpenCV
redirects Qt's plugin path, neither of which may share a process with the PySide6 tests. Without the extra those
checks skip and say why; pycocotools (a core dependency) and PIL checks always run.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from mpae_core.annotation import PartTable
from mpae_core.annotation.export import export_annotations, export_indices, unique_mask_relpaths
from mpae_core.annotation.formats.polygons import part_polygons
from mpae_core.annotation.labels import EXPORT_IGNORE
from mpae_core.annotation.parts import ExportLabel

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


# ----- generated label maps -----------------------------------------------------------------------------------------
def hard_maps() -> dict[str, np.ndarray]:
    """Holes, islands in holes, thin and one-pixel parts, parts on the border, diagonal touches, ignore, noise."""
    maps = {}
    ring = np.zeros((24, 24), np.uint8)
    ring[2:20, 2:20] = 1
    ring[5:10, 5:10] = 0  # a hole ...
    ring[7, 7] = 1  # ... with an island of the same part
    ring[12:15, 4:16] = 2  # a hole filled by another part
    ring[0, :] = 3  # a one-pixel-high part along the border
    ring[:, 23] = 3
    ring[17, 17] = 4  # a one-pixel part inside another part
    ring[21, 0] = 4
    ring[22, 22] = EXPORT_IGNORE
    maps["ring"] = ring
    maps["checker"] = (np.indices((11, 13)).sum(axis=0) % 2).astype(np.uint8)  # one instance, all diagonal touches
    maps["diagonal"] = np.eye(9, dtype=np.uint8) * 2
    maps["full"] = np.full((5, 7), 3, np.uint8)
    maps["one_pixel"] = np.pad(np.ones((1, 1), np.uint8), 2)
    rng = np.random.default_rng(0)
    for i in range(12):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        noise = rng.integers(0, 5, (h, w)).astype(np.uint8)
        if i % 2:  # sparse: many small instances and holes
            noise = (rng.random((h, w)) < 0.5).astype(np.uint8) * rng.integers(1, 3, (h, w)).astype(np.uint8)
        noise[rng.random((h, w)) < 0.05] = EXPORT_IGNORE
        maps[f"noise{i}"] = noise
    return maps


def coco_rasterise(polygons, height: int, width: int) -> np.ndarray:
    rles = mask_utils.frPyObjects([p.edges.astype(float).ravel().tolist() for p in polygons], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def pil_rasterise(polygons, height: int, width: int) -> np.ndarray:
    """What labelme's shape_to_mask does: PIL polygon with fill and outline."""
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    for polygon in polygons:
        draw.polygon([tuple(map(float, p)) for p in polygon.centres], fill=1, outline=1)
    return np.asarray(image).astype(bool)


@pytest.mark.parametrize("name", sorted(hard_maps()))
def test_polygons_rasterise_back_to_exactly_the_part(name):
    indices = hard_maps()[name]
    height, width = indices.shape
    polygons = part_polygons(indices, include_ignore=True)
    for value in np.unique(indices):
        if value == 0:
            continue
        mask = indices == value
        mine = [p for p in polygons if p.index == value]
        _, instances = ndimage.label(mask, structure=np.ones((3, 3)))
        assert len(mine) == instances  # one polygon per 8-connected instance, none dropped
        assert sum(p.area for p in mine) == mask.sum()
        assert np.array_equal(coco_rasterise(mine, height, width), mask)
        assert np.array_equal(pil_rasterise(mine, height, width), mask)
        for p in mine:
            assert len(p.centres) >= 3 and len(p.edges) >= 4


def test_polygons_skip_background_and_ignore_unless_asked():
    indices = np.array([[0, 1], [255, 1]], np.uint8)
    assert [p.index for p in part_polygons(indices)] == [1]
    assert [p.index for p in part_polygons(indices, include_ignore=True)] == [1, 255]
    assert part_polygons(np.zeros((3, 3), np.uint8)) == []
    one = part_polygons(np.pad(np.ones((1, 1), np.uint8), 1))[0]
    assert one.edges.tolist() == [[1, 1], [2, 1], [2, 2], [1, 2]] and one.centres.tolist() == [[1, 1]] * 3
    assert one.bbox == (1, 1, 1, 1) and one.area == 1


# ----- exports ------------------------------------------------------------------------------------------------------
LABELS = [ExportLabel(1, "wing", (230, 25, 75)), ExportLabel(2, "beak: tip", (230, 25, 75)),
          ExportLabel(3, "tail", (0, 0, 0)), ExportLabel(4, "eye", (60, 180, 75))]


@pytest.fixture
def dataset(tmp_path):
    """Photos (a.jpg and a.png clash by name, one in a subfolder) and their export-index maps."""
    photos = tmp_path / "photos"
    rng = np.random.default_rng(1)
    sparse = (rng.random((20, 30)) < 0.5).astype(np.uint8) * rng.integers(1, 5, (20, 30)).astype(np.uint8)
    sparse[rng.random((20, 30)) < 0.05] = EXPORT_IGNORE
    maps = {"a.jpg": hard_maps()["ring"], "a.png": sparse, "sub/b.png": hard_maps()["checker"]}
    for relpath, indices in maps.items():
        (photos / relpath).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*indices.shape, 3), dtype=np.uint8)).save(photos / relpath)
    return photos, maps


def export_all(tmp_path, dataset, formats="png,coco,yolo,labelme,cvat,voc", **kwargs):
    photos, maps = dataset
    return export_indices(maps.items(), LABELS, tmp_path / "out", formats=formats, images_dir=photos,
                          mask_names=unique_mask_relpaths(maps), **kwargs)


def test_coco_polygons_round_trip_through_pycocotools(tmp_path, dataset):
    _, maps = dataset
    result = export_all(tmp_path, dataset, formats="coco", coco_style="polygons")
    coco = COCO(str(result.coco_path))
    assert [c["name"] for c in coco.dataset["categories"]] == [label.name for label in LABELS]
    for image in coco.dataset["images"]:
        indices = maps[image["file_name"]]
        decoded = np.zeros(indices.shape, np.uint8)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            assert isinstance(annotation["segmentation"], list) and annotation["iscrowd"] == 0
            mask = coco.annToMask(annotation).astype(bool)
            assert mask.sum() == annotation["area"]
            decoded[mask] = annotation["category_id"]
        assert np.array_equal(decoded, np.where(indices == EXPORT_IGNORE, 0, indices))  # ignore: no annotation
    rle = export_all(tmp_path / "rle", dataset, formats="coco")
    rle_anns = json.loads(rle.coco_path.read_text())["annotations"]
    poly_anns = coco.dataset["annotations"]
    assert [(a["category_id"], a["area"], a["bbox"]) for a in rle_anns] == \
        [(a["category_id"], a["area"], a["bbox"]) for a in poly_anns]
    results = [{**a, "score": 1.0} for a in poly_anns]
    evaluator = COCOeval(coco, coco.loadRes(results), "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_yolo_layout_classes_and_links(tmp_path, dataset):
    photos, maps = dataset
    root = export_all(tmp_path, dataset, formats="yolo").outputs["yolo"]
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["names"] == {i: label.name for i, label in enumerate(LABELS)} and data["nc"] == 4
    assert data["train"] == data["val"] == "images" and "path" not in data
    for relpath, stem in (("a.jpg", "a.jpg"), ("a.png", "a.png"), ("sub/b.png", "sub/b")):
        link = root / "images" / f"{stem}{Path(relpath).suffix}"
        assert link.read_bytes() == (photos / relpath).read_bytes()
        lines = (root / "labels" / f"{stem}.txt").read_text().splitlines()
        indices = maps[relpath]
        expected = part_polygons(indices)
        assert len(lines) == len(expected)
        h, w = indices.shape
        for line, polygon in zip(lines, expected):
            values = line.split()
            assert int(values[0]) == polygon.index - 1 and len(values) >= 7
            xy = np.array(values[1:], float).reshape(-1, 2)
            assert np.all((xy > 0) & (xy < 1))
            assert np.array_equal(np.floor(xy * [w, h]).astype(int), polygon.centres)


def test_labelme_files_point_at_the_photos(tmp_path, dataset):
    photos, maps = dataset
    root = export_all(tmp_path, dataset, formats="labelme").outputs["labelme"]
    document = json.loads((root / "sub" / "b.json").read_text())
    assert set(document) == {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"}
    assert document["imageData"] is None and (root / "sub" / document["imagePath"]).resolve() == \
        (photos / "sub" / "b.png").resolve()
    assert (document["imageHeight"], document["imageWidth"]) == maps["sub/b.png"].shape
    ring = json.loads((root / "a.jpg.json").read_text())
    names = [s["label"] for s in ring["shapes"]]
    assert set(names) == {"wing", "beak: tip", "tail", "eye", "__ignore__"}
    assert all(s["shape_type"] == "polygon" and s["group_id"] is None and len(s["points"]) >= 3
               for s in ring["shapes"])
    height, width = maps["a.jpg"].shape
    drawn = np.zeros((height, width), np.uint8)
    value = {label.name: label.index for label in LABELS} | {"__ignore__": EXPORT_IGNORE}
    for shape in ring["shapes"]:  # the rasteriser labelme's shapes_to_label uses
        image = Image.new("L", (width, height), 0)
        ImageDraw.Draw(image).polygon([tuple(p) for p in shape["points"]], fill=1, outline=1)
        drawn[np.asarray(image) > 0] = value[shape["label"]]
    assert np.array_equal(drawn, maps["a.jpg"])


def check_cvat_xml(path: Path) -> ET.Element:
    """The structure CVAT's documentation gives for "CVAT for images" 1.1 (docs/other/xml_format): what its
    importer reads (image id/name/width/height, polygon label/occluded/points, labels declared in the meta)."""
    root = ET.parse(path).getroot()
    assert root.tag == "annotations" and root.find("version").text == "1.1"
    task = root.find("meta/task")
    assert task is not None and task.find("mode").text == "annotation"
    declared = set()
    for label in task.findall("labels/label"):
        assert label.find("name").text and label.find("type").text == "polygon"
        assert label.find("color").text.startswith("#") and len(label.find("color").text) == 7
        declared.add(label.find("name").text)
    ids = []
    for image in root.findall("image"):
        ids.append(int(image.get("id")))
        width, height = int(image.get("width")), int(image.get("height"))
        assert image.get("name")
        for child in image:
            assert child.tag == "polygon" and child.get("label") in declared
            assert child.get("occluded") in ("0", "1") and int(child.get("z_order")) == 0
            points = [tuple(map(float, p.split(","))) for p in child.get("points").split(";")]
            assert len(points) >= 3 and all(0 <= x <= width and 0 <= y <= height for x, y in points)
    assert ids == list(range(len(ids)))
    return root


def test_cvat_xml_follows_the_documented_format(tmp_path, dataset):
    _, maps = dataset
    root = check_cvat_xml(export_all(tmp_path, dataset, formats="cvat").outputs["cvat"])
    assert [i.get("name") for i in root.findall("image")] == list(maps)
    ring = root.findall("image")[0]
    value = {label.name: label.index for label in LABELS}
    height, width = maps["a.jpg"].shape
    drawn = np.zeros((height, width), np.uint8)
    for polygon in ring.findall("polygon"):  # CVAT's pixel-corner canvas, rasterised by pycocotools as Datumaro does
        flat = [float(v) for p in polygon.get("points").split(";") for v in p.split(",")]
        mask = mask_utils.decode(mask_utils.frPyObjects([flat], height, width)[0]).astype(bool)
        drawn[mask] = value[polygon.get("label")]
    assert np.array_equal(drawn, np.where(maps["a.jpg"] == EXPORT_IGNORE, 0, maps["a.jpg"]))


def test_voc_layout_for_cvat_and_mmseg(tmp_path, dataset):
    _, maps = dataset
    root = export_all(tmp_path, dataset, formats="voc").outputs["voc"]
    names = (root / "ImageSets" / "Segmentation" / "default.txt").read_text().splitlines()
    assert names == ["a.jpg", "a.png", "sub/b"]
    lines = (root / "labelmap.txt").read_text().splitlines()
    assert lines[0] == "# label:color_rgb:parts:actions" and lines[1] == "background:0,0,0::"
    entries = [line.split(":") for line in lines[1:]]
    assert all(len(e) == 4 for e in entries)  # Datumaro's parser needs exactly four fields
    assert [e[0] for e in entries] == ["background", "wing", "beak_ tip", "tail", "eye", "ignored"]
    colors = [tuple(map(int, e[1].split(","))) for e in entries]
    assert len(set(colors)) == len(colors) and colors[-1] == (224, 224, 192)
    for relpath, stem in zip(maps, names):
        with Image.open(root / "SegmentationClass" / f"{stem}.png") as mask:
            assert mask.mode == "P"
            assert np.array_equal(np.asarray(mask), maps[relpath])  # mmseg reads the indices (255 = ignore_index)
            rgb = np.asarray(mask.convert("RGB"))  # CVAT and Datumaro read colours through labelmap.txt
        by_color = {c: i for i, c in enumerate(colors[:-1])} | {colors[-1]: 255}
        decoded = np.vectorize(lambda r, g, b: by_color[(r, g, b)])(rgb[..., 0], rgb[..., 1], rgb[..., 2])
        assert np.array_equal(decoded, maps[relpath])


def test_a_cancelled_export_writes_no_list_files(tmp_path, dataset):
    def cancel(relpath):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_all(tmp_path, dataset, formats="coco,yolo,cvat,voc", on_image=cancel)
    out = tmp_path / "out"
    assert not (out / "coco.json").exists() and not (out / "yolo" / "data.yaml").exists()
    assert not (out / "cvat" / "annotations.xml").exists() and not (out / "voc" / "labelmap.txt").exists()
    assert not [p for p in out.rglob("*.tmp")]


def test_formats_need_the_photos_and_distinct_names(tmp_path, dataset):
    _, maps = dataset
    with pytest.raises(ValueError, match="images folder"):
        export_indices(maps.items(), LABELS, tmp_path / "x", formats="yolo")
    with pytest.raises(ValueError, match="would both be exported"):
        export_indices(maps.items(), LABELS, tmp_path / "y", formats="cvat")  # a.jpg and a.png, no unique names
    with pytest.raises(ValueError, match="Unknown export format"):
        export_indices(maps.items(), LABELS, tmp_path / "z", formats="png,tiff")


def test_a_project_exports_every_format_from_its_own_photos(tmp_path):
    from mpae_core.annotation import AnnotationProject

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (12, 10), "white").save(photos / "one.jpg")
    project = AnnotationProject.create(photos)
    table = PartTable.default(2)
    label_map = np.zeros((10, 12), np.uint16)
    label_map[2:6, 3:9] = 2
    result = export_annotations([("one.jpg", label_map)], table, tmp_path / "out", formats=("yolo", "labelme"),
                                images_dir=project.images_folder)
    assert (result.outputs["yolo"] / "images" / "one.jpg").read_bytes() == (photos / "one.jpg").read_bytes()
    line = (result.outputs["yolo"] / "labels" / "one.txt").read_text().split()
    assert line[0] == "1"  # slot 1 → export label 2 → class 1


# ----- the consumers themselves (optional extra) --------------------------------------------------------------------
def needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed; `pip install -e '.[dev,formats-check]'` installs the consumers")


def run_consumer(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter (no PySide6 there); it prints one JSON object."""
    env = dict(os.environ, YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"), YOLO_OFFLINE="1", HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_labelme_reads_the_files_and_rasterises_them_back(tmp_path, dataset):
    needs("labelme")
    _, maps = dataset
    root = export_all(tmp_path, dataset, formats="labelme").outputs["labelme"]
    value = {label.name: label.index for label in LABELS} | {"__ignore__": EXPORT_IGNORE}
    files = {relpath: str(root / f"{stem}.json") for relpath, stem in (("a.jpg", "a.jpg"), ("a.png", "a.png"),
                                                                       ("sub/b.png", "sub/b"))}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"files": files, "value": value}))
    result = run_consumer(f"""
        import json, numpy as np
        import labelme
        from labelme.utils import shapes_to_label
        try:
            from labelme import LabelFile
        except ImportError:
            from labelme.label_file import LabelFile
        spec = json.load(open({str(spec)!r}))
        out = {{}}
        for relpath, path in spec["files"].items():
            label_file = LabelFile(path)
            raw = json.load(open(path))
            shape = (raw["imageHeight"], raw["imageWidth"])
            cls, _ = shapes_to_label(shape, label_file.shapes, spec["value"])
            out[relpath] = cls.tolist()
        print(json.dumps(out))
    """, tmp_path)
    for relpath, indices in maps.items():
        assert np.array_equal(np.array(result[relpath]), indices)


def test_ultralytics_verifies_the_labels_and_rasterises_them_back(tmp_path, dataset):
    needs("ultralytics")
    _, maps = dataset
    root = export_all(tmp_path, dataset, formats="yolo").outputs["yolo"]
    result = run_consumer(f"""
        import json, numpy as np
        from pathlib import Path
        import ultralytics.data.utils as data_utils
        from ultralytics.data.utils import img2label_paths, polygon2mask, verify_image_label
        data_utils.check_font = lambda *args, **kwargs: None  # the only step that would download (a font)
        root = Path({str(root)!r})
        data = data_utils.check_det_dataset(str(root / "data.yaml"))
        images = sorted(p for p in Path(data["train"]).rglob("*") if p.is_file())
        out = {{"nc": data["nc"], "names": data["names"], "images": {{}}}}
        for image, label in zip(images, img2label_paths([str(p) for p in images])):
            args = (str(image), label, "", False, data["nc"], 0, 0, False)
            try:
                checked = verify_image_label(args)
            except ValueError:
                checked = verify_image_label(args[:7])  # older Ultralytics: no single_cls
            _, lb, shape, segments, _, nm, nf, ne, nc, msg = checked
            assert nc == 0, msg
            drawn = np.zeros(shape, np.uint8)
            for cls, segment in zip(lb[:, 0], segments):
                pixels = segment * np.array([shape[1], shape[0]], dtype=np.float32)
                drawn[polygon2mask(shape, [pixels.reshape(-1)], color=1).astype(bool)] = int(cls) + 1
            rel = str(image.relative_to(root / "images"))
            out["images"][rel] = {{"corrupt": nc, "missing": nm, "msg": msg, "drawn": drawn.tolist()}}
        print(json.dumps(out))
    """, tmp_path)
    assert result["nc"] == 4 and list(result["names"].values()) == [label.name for label in LABELS]
    for relpath, link in (("a.jpg", "a.jpg.jpg"), ("a.png", "a.png.png"), ("sub/b.png", "sub/b.png")):
        checked = result["images"][link]
        assert checked["corrupt"] == 0 and checked["missing"] == 0, checked["msg"]
        assert np.array_equal(np.array(checked["drawn"]), np.where(maps[relpath] == EXPORT_IGNORE, 0, maps[relpath]))
