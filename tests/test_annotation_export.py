"""PNG and COCO exports: indices after merges/ignores, palettes, pycocotools round trips, streaming, merging parts."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mpae_core.annotation.export import (
    CocoWriter,
    coco_annotations_for,
    export_annotations,
    export_coco,
    export_png,
    mask_relpath,
    merge_coco_parts,
    unique_mask_relpaths,
)
from mpae_core.annotation.labels import IGNORE_LABEL
from mpae_core.annotation.parts import PartTable
from mpae_core.annotation.project import AnnotationProject
from mpae_core.inference import PartPrediction

K = 5
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools internals


def label_maps(seed: int = 0, count: int = 4) -> list[tuple[str, np.ndarray]]:
    """Label maps of different sizes from random predictions: every slot appears somewhere, some images lack some."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        height, width = int(rng.integers(20, 50)), int(rng.integers(20, 50))
        logits = torch.from_numpy(rng.normal(size=(K + 1, 4, 4)).astype(np.float32) * 4)
        items.append((f"dir/img_{i}.jpg", PartPrediction.from_logits(logits, (height, width)).label_map()))
    return items


def read_png(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "P"
        return np.asarray(im)


def decode_coco(coco: COCO, image_id: int) -> np.ndarray:
    info = coco.imgs[image_id]
    decoded = np.zeros((info["height"], info["width"]), dtype=np.uint8)
    for ann in coco.imgToAnns[image_id]:
        mask = coco.annToMask(ann).astype(bool)
        assert not (decoded[mask] != 0).any(), "annotations of one image must not overlap"
        decoded[mask] = ann["category_id"]
    return decoded


def test_png_export_holds_the_export_indices_with_palette_and_labels_files(tmp_path):
    table = PartTable.default(K)
    table.rename(0, "head")
    table.merge([3], 1)
    table.set_as_background(4)
    items = label_maps()
    result = export_png(items, table, tmp_path)
    lut = np.array([0, 1, 2, 3, 2, 0])  # slot 3 → label of slot 1, slot 4 ignored
    for rel, labels in items:
        path = tmp_path / "masks" / "dir" / rel.split("/")[1].replace(".jpg", ".png")
        np.testing.assert_array_equal(read_png(path), lut[labels])
    assert result.images == len(items)
    palette = Image.open(path).getpalette()
    assert palette[0:3] == [0, 0, 0] and palette[255 * 3 : 256 * 3] == [255, 255, 255]
    assert tuple(palette[3:6]) == table[0].color and tuple(palette[6:9]) == table[1].color
    assert (tmp_path / "labels.txt").read_text().splitlines() == ["background", "head", "part_02", "part_03"]
    labels_json = json.loads((tmp_path / "labels.json").read_text())
    assert labels_json["2"]["name"] == "part_02" and labels_json["2"]["slots"] == [1, 3]
    assert labels_json["0"]["name"] == "background" and labels_json["255"]["name"] == "ignore"
    assert set(labels_json) == {"0", "1", "2", "3", "255"}


def test_table_changes_propagate_to_every_image_of_a_project(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    project = AnnotationProject.create(images, parts=PartTable.default(K))
    items = label_maps(seed=1, count=3)
    rng = np.random.default_rng(1)
    for rel, labels in items:
        logits = torch.from_numpy(rng.normal(size=(K + 1, 4, 4)).astype(np.float32) * 4)
        project.set_prediction(rel, PartPrediction.from_logits(logits, labels.shape))
    project.edits(items[0][0]).brush(5, 5, 3, IGNORE_LABEL)
    raw = {rel: project.label_map(rel) for rel, _ in items}

    export_png(project, None, tmp_path / "before")
    project.parts.rename(2, "wing")
    project.parts.merge([0, 4], 2)
    project.parts.set_as_background(1)
    export_png(project, None, tmp_path / "after")
    lut = np.zeros(IGNORE_LABEL + 1, dtype=np.uint8)
    lut[:K + 1] = [0, 1, 0, 1, 2, 1]  # labels: 1 = wing (slots 0, 2, 4), 2 = part_04 (slot 3)
    lut[IGNORE_LABEL] = 255
    for rel, _ in items:
        mask_name = mask_relpath(rel)
        np.testing.assert_array_equal(read_png(tmp_path / "after" / "masks" / mask_name), lut[raw[rel]])
        before = read_png(tmp_path / "before" / "masks" / mask_name)
        np.testing.assert_array_equal(before, np.where(raw[rel] == IGNORE_LABEL, 255, raw[rel]))
    assert (tmp_path / "after" / "labels.txt").read_text().split() == ["background", "wing", "part_04"]
    assert (read_png(tmp_path / "after" / "masks" / mask_relpath(items[0][0]))[5, 5]) == 255
    project.parts.unmerge(4)  # un-merging gives slot 4 its own label again
    export_png(project, None, tmp_path / "unmerged")
    assert (tmp_path / "unmerged" / "labels.txt").read_text().split() == ["background", "wing", "part_04", "part_05"]


def test_coco_export_round_trips_through_pycocotools(tmp_path):
    table = PartTable.default(K)
    table.merge(2, 0)
    items = label_maps(seed=2, count=5)
    items.append(("empty.png", np.zeros((12, 17), dtype=np.uint8)))  # background only: an image, no annotation
    png = export_png(items, table, tmp_path)
    result = export_coco(items, table, tmp_path)
    data = json.loads(result.coco_path.read_text())
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4]
    assert [c["name"] for c in data["categories"]] == ["part_01", "part_02", "part_04", "part_05"]
    assert {c["supercategory"] for c in data["categories"]} == {"part"}
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"]) == result.annotations
    assert len({i["id"] for i in data["images"]}) == len(items)
    assert all(a["iscrowd"] == 0 and isinstance(a["segmentation"]["counts"], str) for a in data["annotations"])

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(result.coco_path))
    assert png.images == len(items)
    for image in data["images"]:
        expected = read_png(tmp_path / "masks" / mask_relpath(image["file_name"]))
        assert (image["height"], image["width"]) == expected.shape
        np.testing.assert_array_equal(decode_coco(coco, image["id"]), expected)
        for ann in coco.imgToAnns[image["id"]]:
            mask = expected == ann["category_id"]
            assert ann["area"] == mask.sum()
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert coco.imgToAnns[data["images"][-1]["id"]] == []


def test_cocoeval_of_the_file_against_itself_gives_ap_1(tmp_path):
    table = PartTable.default(K)
    result = export_coco(label_maps(seed=3, count=6), table, tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(result.coco_path))
        detections = truth.loadRes([
            {"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "score": 1.0} for a in truth.dataset["annotations"]])
        evaluation = COCOeval(truth, detections, iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)
    assert evaluation.stats[1] == pytest.approx(1.0)


def test_ignored_pixels_have_no_coco_annotation(tmp_path):
    labels = np.array([[1, 1, IGNORE_LABEL], [0, 2, IGNORE_LABEL]], dtype=np.uint16)
    table = PartTable.default(2)
    indices = table.to_export(labels)
    assert indices.tolist() == [[1, 1, 255], [0, 2, 255]]
    annotations = coco_annotations_for(indices)
    assert [(a["category_id"], a["area"]) for a in annotations] == [(1, 2), (2, 1)]


def test_exports_stream_one_image_at_a_time(tmp_path):
    items = label_maps(seed=4, count=4)
    seen = []

    def source():
        for rel, labels in items:
            if seen:  # the previous image is already written before the next one is produced
                assert (tmp_path / "masks" / mask_relpath(seen[-1])).is_file()
            seen.append(rel)
            yield rel, labels

    result = export_annotations(source(), PartTable.default(K), tmp_path, formats=["png", "coco"])
    assert result.images == 4 and (tmp_path / "coco.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_export_writes_no_coco_file(tmp_path):
    def source():
        yield from label_maps(seed=5, count=2)
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        export_coco(source(), PartTable.default(K), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_merge_coco_parts_renumbers_ids(tmp_path):
    table = PartTable.default(K)
    items = label_maps(seed=6, count=6)
    parts = []
    for rank in range(3):
        with CocoWriter(tmp_path / f"part{rank}.json", table) as writer:
            for rel, labels in items[rank::3]:
                writer.add(rel, labels)
        parts.append(tmp_path / f"part{rank}.json")
    assert json.loads(parts[1].read_text())["images"][0]["id"] == 1  # every rank numbers from 1
    merged = merge_coco_parts(parts, tmp_path / "coco.json")
    data = json.loads(merged.read_text())
    assert len(data["images"]) == 6 and len({i["id"] for i in data["images"]}) == 6
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(merged))
    by_name = dict(items)
    for image in data["images"]:
        np.testing.assert_array_equal(decode_coco(coco, image["id"]), table.to_export(by_name[image["file_name"]]))

    with pytest.raises(ValueError, match="already added"):
        merge_coco_parts([parts[0], parts[0]], tmp_path / "twice.json")
    other = PartTable.default(K)
    other.set_as_background(0)
    with CocoWriter(tmp_path / "other.json", other) as writer:
        writer.add("x.jpg", items[0][1])
    with pytest.raises(ValueError, match="categories differ"):
        merge_coco_parts([parts[0], tmp_path / "other.json"], tmp_path / "bad.json")
    assert not (tmp_path / "twice.json").exists() and not (tmp_path / "bad.json").exists()


def test_mask_names_and_collisions(tmp_path):
    assert mask_relpath("a/b.c.jpg") == "a/b.c.png" and mask_relpath("noext") == "noext.png"
    names = unique_mask_relpaths(["x/a.jpg", "x/A.png", "x/b.jpg"])
    assert names == {"x/a.jpg": "x/a.jpg.png", "x/A.png": "x/A.png.png", "x/b.jpg": "x/b.png"}
    labels = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="would both be exported"):
        export_png([("a.jpg", labels), ("a.png", labels)], PartTable.default(2), tmp_path)
    export_png([("a.jpg", labels), ("a.png", labels)], PartTable.default(2), tmp_path / "ok",
               mask_names=unique_mask_relpaths(["a.jpg", "a.png"]))
    assert sorted(p.name for p in (tmp_path / "ok" / "masks").iterdir()) == ["a.jpg.png", "a.png.png"]
