"""training.synthetic: determinism, the PartImageNet-Seg COCO layout, keypoints and label maps."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from training.metrics import decode_rle, partimagenet_gt_mask
from training.synthetic import (
    BACKGROUND_LABEL,
    CATEGORIES,
    CATEGORY_NAMES,
    MIN_KEYPOINT_PIXELS,
    PART_NAMES,
    generate_synthetic_dataset,
    load_label_map,
    _keypoints,
    render_sample,
)

NUM_TRAIN, NUM_TEST, SIZE = 24, 12, (96, 80)  # non-square: width and height must not be swapped anywhere


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_synthetic_dataset(tmp_path_factory.mktemp("syn") / "data", num_train=NUM_TRAIN,
                                      num_test=NUM_TEST, image_size=SIZE, seed=3)


def _keypoint_rows(path: Path) -> dict[str, np.ndarray]:
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, *values = line.split()
        rows[name] = np.array(values, dtype=np.float64).reshape(-1, 3)
    return rows


def test_layout_and_metadata(dataset):
    for split, count in (("train", NUM_TRAIN), ("test", NUM_TEST)):
        images = sorted((dataset / "images" / split).iterdir())
        assert len(images) == count and all(p.suffix == ".JPEG" for p in images)
        with Image.open(images[0]) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == SIZE
        assert (dataset / "annotations" / split / f"{split}.json").is_file()
        assert len((dataset / "keypoints" / f"{split}.txt").read_text().splitlines()) == count
    meta = json.loads((dataset / "synthetic.json").read_text())
    assert meta["seed"] == 3 and meta["version"] >= 1 and meta["image_size"] == list(SIZE)
    assert meta["parts"] == list(PART_NAMES) and meta["background_label"] == BACKGROUND_LABEL
    assert "keypoints" in (dataset / "README.txt").read_text()


def test_same_seed_gives_identical_annotations_and_another_seed_does_not(dataset, tmp_path):
    again = generate_synthetic_dataset(tmp_path / "again", num_train=NUM_TRAIN, num_test=NUM_TEST,
                                       image_size=SIZE, seed=3)
    other = generate_synthetic_dataset(tmp_path / "other", num_train=NUM_TRAIN, num_test=NUM_TEST,
                                       image_size=SIZE, seed=4)
    for rel in ("annotations/train/train.json", "annotations/test/test.json", "keypoints/train.txt",
                "keypoints/test.txt"):
        assert (dataset / rel).read_bytes() == (again / rel).read_bytes()
        assert (dataset / rel).read_bytes() != (other / rel).read_bytes()
    name = sorted((dataset / "images" / "test").iterdir())[0].name
    assert (dataset / "images/test" / name).read_bytes() == (again / "images/test" / name).read_bytes()


@pytest.mark.parametrize("split", ["train", "test"])
def test_coco_file_loads_and_masks_decode(dataset, split):
    coco = COCO(str(dataset / "annotations" / split / f"{split}.json"))
    assert sorted(coco.cats) == list(range(len(PART_NAMES)))
    assert [coco.cats[i]["name"] for i in range(len(PART_NAMES))] == list(PART_NAMES)
    assert len(coco.imgs) == (NUM_TRAIN if split == "train" else NUM_TEST)
    for image_id, img in coco.imgs.items():
        assert (img["width"], img["height"]) == SIZE
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert anns, f"{img['file_name']} has no annotation"
        cover = np.zeros((img["height"], img["width"]), np.int64)
        for ann in anns:
            mask = decode_rle(coco.annToRLE(ann))
            assert mask.shape == (img["height"], img["width"])
            assert ann["iscrowd"] == 0 and ann["area"] == int(mask.sum()) > 0
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            cover += mask
        assert cover.max() == 1  # part instances never overlap


def test_label_map_from_disk_equals_render_and_partimagenet_protocol(dataset):
    coco = json.loads((dataset / "annotations/test/test.json").read_text())
    anns_by_image = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        anns_by_image[ann["image_id"]].append(ann)
    for index, img in enumerate(coco["images"]):
        sample = render_sample(index, "test", seed=3, image_size=SIZE)
        assert sample.name == img["file_name"] and sample.category == img["category"]
        labels = load_label_map(dataset, "test", img["file_name"])
        np.testing.assert_array_equal(labels, sample.labels)
        gt = partimagenet_gt_mask(anns_by_image[img["id"]], img["height"], img["width"], len(PART_NAMES),
                                  out_size=None)
        np.testing.assert_array_equal(gt, labels)
    assert set(np.unique(labels)) <= set(range(len(PART_NAMES) + 1))


@pytest.mark.parametrize("split", ["train", "test"])
def test_keypoints_land_inside_their_part(dataset, split):
    rows = _keypoint_rows(dataset / "keypoints" / f"{split}.txt")
    visible_total = 0
    for index, (name, kps) in enumerate(rows.items()):
        assert kps.shape == (len(PART_NAMES), 3)
        sample = render_sample(index, split, seed=3, image_size=SIZE)
        labels = load_label_map(dataset, split, name)
        areas = np.bincount(sample.instance_map.ravel(), minlength=len(sample.instance_parts) + 1)
        for part, (x, y, v) in enumerate(kps):
            if v:
                assert labels[int(np.floor(y)), int(np.floor(x))] == part, (name, PART_NAMES[part])
                assert (labels == part).sum() >= MIN_KEYPOINT_PIXELS
                visible_total += 1
            else:
                assert x == y == 0
                sizes = [areas[k + 1] for k, p in enumerate(sample.instance_parts) if p == part]
                assert all(s < MIN_KEYPOINT_PIXELS for s in sizes), (name, PART_NAMES[part])
    assert visible_total > 2 * len(rows)


def test_keypoint_of_the_largest_instance_stays_inside_and_tiny_parts_are_hidden():
    eye, wheel, leg = PART_NAMES.index("eye"), PART_NAMES.index("wheel"), PART_NAMES.index("leg")
    inst = np.zeros((20, 20), np.uint8)
    inst[2:5, 2:5] = 1  # eye, 9 px
    inst[10:13, 10:16] = 2  # eye, 18 px: the larger one carries the keypoint
    inst[0, 17:20] = 3  # wheel, 3 px: too small to be visible
    inst[14:19, 2:8] = 4  # leg: a U shape whose centroid falls in the gap
    inst[14:18, 4:6] = 0
    kps = _keypoints(inst, [eye, eye, wheel, leg])
    np.testing.assert_allclose(kps[eye], [13.0, 11.5, 1.0])
    np.testing.assert_array_equal(kps[wheel], [0.0, 0.0, 0.0])
    x, y, v = kps[leg]
    assert v == 1 and inst[int(y), int(x)] == 4
    assert np.count_nonzero(kps[:, 2]) == 2


def test_variety_categories_absent_parts_and_occlusion():
    samples = [render_sample(i, "train", seed=0) for i in range(60)]
    assert set(s.category for s in samples) == set(CATEGORY_NAMES)
    specs = {c.name: c for c in CATEGORIES}
    absent = sum(Counter(PART_NAMES[p] for p in s.instance_parts) != Counter(p for p, _ in specs[s.category].parts)
                 for s in samples)
    occluded = sum(s.occluded for s in samples)
    assert 3 <= absent < 60 and 3 <= occluded < 60
    assert len(set(s.image.tobytes() for s in samples)) == len(samples)
    # Poses differ: the same category's object does not sit at the same place with the same size every time.
    birds = [s.labels != BACKGROUND_LABEL for s in samples if s.category == "bird"]
    assert len(birds) >= 2 and len({(m.sum(), *np.argwhere(m).mean(0).round()) for m in birds}) == len(birds)


def test_part_names_are_shared_across_categories():
    users = Counter(part for c in CATEGORIES for part in {p for p, _ in c.parts})
    assert set(users) == set(PART_NAMES)
    assert users["eye"] >= 3 and users["body"] >= 3 and users["tail"] >= 2 and users["leg"] >= 2
    kinds = {}
    for c in CATEGORIES:
        for part, shape in c.parts:
            kinds.setdefault(part, set()).add(shape[0])
    assert kinds["eye"] == {"ellipse"} and kinds["leg"] == {"rect"} and kinds["tail"] == {"poly"}


def test_refuses_a_foreign_folder_and_bad_arguments(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_synthetic_dataset(tmp_path, num_train=1, num_test=1)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="image_size"):
        generate_synthetic_dataset(tmp_path / "x", num_train=1, num_test=1, image_size=(8, 8))
    with pytest.raises(ValueError, match="split"):
        render_sample(0, "val")


def test_regenerating_a_smaller_set_leaves_no_stale_images(tmp_path):
    root = generate_synthetic_dataset(tmp_path / "d", num_train=4, num_test=2, image_size=SIZE)
    generate_synthetic_dataset(root, num_train=2, num_test=1, image_size=SIZE)
    assert len(list((root / "images" / "train").iterdir())) == 2
    assert len(list((root / "images" / "test").iterdir())) == 1
