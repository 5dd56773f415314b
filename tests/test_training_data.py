"""Dataset loaders of training/data on tiny datasets written in each real on-disk format."""
from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mpae_core.images import ImageLoadError, load_image
from mpae_core.inference import IMAGENET_MEAN, IMAGENET_STD, preprocess
from training.data import (DATASET_NAMES, AugmentConfig, CelebADataset, CUBDataset, DatasetFormatError,
                           DatasetLayoutError, ImageFolderDataset, PartImageNetDataset, build_dataset, collate,
                           eval_transform, train_transform)
from training.data.base import relative_path

S = 32
NO_GEOMETRY = dict(degrees=0.0, translate=(0.0, 0.0), scale_range=(1.0, 1.0))


def write_jpeg(path: Path, size: tuple[int, int] = (60, 40), seed: int = 0) -> Path:
    """A noisy RGB JPEG (noise, so flips and shifts change the pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def normalise(image: Image.Image) -> torch.Tensor:
    a = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (a - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


# --- tiny datasets --------------------------------------------------------------------------------------------
CUB_FILES = {1: ("001.Albatross/a_1.jpg", (60, 40)), 2: ("001.Albatross/a_2.jpg", (40, 60)),
             3: ("002.Blue_Jay/b_3.jpg", (60, 40))}


@pytest.fixture
def cub_root(tmp_path) -> Path:
    root = tmp_path / "CUB"
    for image_id, (name, size) in CUB_FILES.items():
        write_jpeg(root / "images" / name, size, seed=image_id)
    write_lines(root / "images.txt", [f"{i} {name}" for i, (name, _) in CUB_FILES.items()])
    write_lines(root / "train_test_split.txt", ["1 1", "2 0", "3 1"])
    write_lines(root / "train_list.txt", [f"1 {CUB_FILES[1][0]}", f"3 {CUB_FILES[3][0]}"])
    write_lines(root / "test_list.txt", [f"2 {CUB_FILES[2][0]}"])
    write_lines(root / "bounding_boxes.txt", ["1 10 5 30 20", "2 6 12 24 36.0", "3 0 0 60 40"])
    parts = []
    for image_id, (_, (w, h)) in CUB_FILES.items():
        parts += [f"{image_id} 1 {w / 2} {h / 2} 1", f"{image_id} 2 {w} {h} 1", f"{image_id} 3 0.0 0.0 0"]
        parts += [f"{image_id} {p} {p}.0 {p}.0 1" for p in range(4, 16)]
    write_lines(root / "parts" / "part_locs.txt", parts)
    return root


CELEBA_SIZES = {"000001.jpg": (60, 40), "000002.jpg": (40, 60), "000003.jpg": (600, 400)}


def celeba_line(name: str) -> str:
    w, h = CELEBA_SIZES[name]
    points = [(w / 2, h / 2), (w, h), (0, 0), (w / 4, h / 4), (w / 2, h)]
    return ",".join([name] + [f"{v:g}" for p in points for v in p])


@pytest.fixture
def celeba_root(tmp_path) -> Path:
    root = tmp_path / "CelebA"
    for i, (name, size) in enumerate(CELEBA_SIZES.items()):
        write_jpeg(root / "img_celeba" / name, size, seed=10 + i)
    write_lines(root / "cele_train_lm.txt", [celeba_line("000001.jpg"), celeba_line("000003.jpg")])
    write_lines(root / "MAFL_train_lm.txt", [celeba_line("000003.jpg")])
    write_lines(root / "MAFL_test_lm.txt", [celeba_line("000001.jpg"), celeba_line("000002.jpg")])
    return root


def polygon_ann(ann_id: int, image_id: int, category: int, x0: int, y0: int, x1: int, y1: int) -> dict:
    """A pycocotools-compatible polygon annotation of the rectangle [x0, x1] × [y0, y1]."""
    return {"id": ann_id, "image_id": image_id, "category_id": category, "iscrowd": 0,
            "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]], "area": (x1 - x0) * (y1 - y0),
            "bbox": [x0, y0, x1 - x0, y1 - y0]}


def coco_json(file_names: list[str]) -> dict:
    """Images 1..n (60×40); every image but the last has annotations."""
    images = [{"id": i + 1, "file_name": name, "height": 40, "width": 60} for i, name in enumerate(file_names)]
    anns = [polygon_ann(1, 1, 0, 10, 10, 30, 30), polygon_ann(2, 1, 3, 40, 5, 55, 35)]
    anns += [polygon_ann(10 + i, i, 1, 0, 0, 20, 20) for i in range(2, len(file_names))]
    return {"images": images, "annotations": anns, "categories": [{"id": c, "name": f"p{c}"} for c in range(4)]}


OOD_NAMES = ["n01440764/n01440764_1.JPEG",  # PDiscoFormer's prepare script on Linux
             "n01440764\\n01440764_2.JPEG",  # the same script run on Windows
             "n02000000_3.JPEG",  # a bare ImageNet name: found under train/<wnid>/
             "n02000000/n02000000_4.JPEG"]  # no annotation: dropped


@pytest.fixture
def ood_root(tmp_path) -> Path:
    root = tmp_path / "PartImageNetOOD"
    for i, name in enumerate(["n01440764_1", "n01440764_2", "n02000000_3", "n02000000_4"]):
        write_jpeg(root / "train" / name.split("_")[0] / f"{name}.JPEG", seed=20 + i)
    for split in ("train", "test"):
        (root / f"train_{split}.json").write_text(json.dumps(coco_json(OOD_NAMES)), encoding="utf-8")
    return root


@pytest.fixture
def seg_root(tmp_path) -> Path:
    root = tmp_path / "PartImageNet_Seg"
    names = ["n01440764_7.JPEG", "n03000000_8.JPEG", "n03000000_9.JPEG"]
    for split in ("train", "test"):
        for i, name in enumerate(names):
            write_jpeg(root / "images" / split / name, seed=30 + i)
        path = root / "annotations" / split / f"{split}.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(coco_json(names)), encoding="utf-8")
    return root


@pytest.fixture
def folder_root(tmp_path) -> Path:
    root = tmp_path / "photos"
    write_jpeg(root / "a.jpg", seed=40)
    write_jpeg(root / "b.png", (40, 60), seed=41)
    write_jpeg(root / "sub" / "c.jpg", seed=42)
    return root


def coco_gt_mask(annotations: list[dict], height: int, width: int) -> np.ndarray:
    """A stand-in for metrics' GT protocol: decode each polygon with pycocotools, label = category + 1."""
    from pycocotools import mask as mask_utils

    out = np.zeros((height, width), dtype=np.int64)
    for ann in annotations:
        with warnings.catch_warnings():  # pycocotools' decode warns under numpy 2 (its __array__ lacks 'copy')
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], height, width)))
        out[decoded > 0] = ann["category_id"] + 1
    return out


# --- transforms -----------------------------------------------------------------------------------------------
def test_eval_transform_is_the_inference_squash(tmp_path):
    image = load_image(write_jpeg(tmp_path / "x.jpg"))
    out = eval_transform(S)(image)
    assert type(out) is torch.Tensor and out.shape == (3, S, S) and out.dtype == torch.float32
    torch.testing.assert_close(out, preprocess(image, S), atol=1e-5, rtol=0)


def test_train_transform_resizes_shorter_side_then_crops(tmp_path):
    image = load_image(write_jpeg(tmp_path / "x.jpg", (60, 40)))
    out = train_transform(20, AugmentConfig(flip=0.0, **NO_GEOMETRY))(image)
    assert type(out) is torch.Tensor and out.shape == (3, 20, 20)
    resized = normalise(image.resize((30, 20), Image.BILINEAR))  # shorter side 40 → 20, aspect kept
    errors = [float((resized[:, :, x:x + 20] - out).abs().max()) for x in range(11)]
    assert min(errors) < 1e-5


def test_train_flip_and_affine_fill(tmp_path):
    image = load_image(write_jpeg(tmp_path / "sq.jpg", (S, S)))
    plain = eval_transform(S)(image)
    torch.testing.assert_close(train_transform(S, AugmentConfig(flip=0.0, **NO_GEOMETRY))(image), plain)
    torch.testing.assert_close(train_transform(S, AugmentConfig(flip=1.0, **NO_GEOMETRY))(image), plain.flip(-1))
    shrunk = train_transform(S, AugmentConfig(flip=0.0, degrees=0.0, translate=(0.0, 0.0), scale_range=(0.5, 0.5)))
    corner = shrunk(image)[:, 0, 0]  # the image shrinks to half: the corner is fill 0, normalised
    expected = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(corner, expected)


def test_train_augmentation_repeats_under_manual_seed(tmp_path):
    image = load_image(write_jpeg(tmp_path / "x.jpg"))
    transform = train_transform(S)
    torch.manual_seed(3)
    first = transform(image)
    torch.manual_seed(3)
    again = transform(image)
    torch.manual_seed(4)
    other = transform(image)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert not torch.equal(first, other)


def test_augmentation_disabled_is_the_eval_transform(tmp_path):
    image = load_image(write_jpeg(tmp_path / "x.jpg"))
    torch.testing.assert_close(train_transform(S, AugmentConfig(enabled=False))(image), eval_transform(S)(image))


@pytest.mark.parametrize("kwargs", [dict(flip=1.5), dict(degrees=-1.0), dict(translate=(0.1, 2.0)),
                                    dict(scale_range=(1.1, 0.9)), dict(scale_range=(0.0, 1.0))])
def test_augment_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="AugmentConfig"):
        AugmentConfig(**kwargs)


# --- CUB ------------------------------------------------------------------------------------------------------
def test_cub_eval_keypoints_visibility_and_bbox_in_squashed_frame(cub_root):
    ds = CUBDataset(cub_root, "test", S, train=False)
    assert len(ds) == 1
    item = ds[0]
    assert item["image"].shape == (3, S, S) and item["index"] == 0 and item["label"] == 0
    assert Path(item["path"]) == cub_root / "images" / "001.Albatross" / "a_2.jpg"
    kp = item["keypoints"]
    assert kp.shape == (15, 2) and kp.dtype == torch.float64  # float64, as the reference computes them
    torch.testing.assert_close(kp[0], torch.tensor([S / 2, S / 2], dtype=torch.float64))  # centre of 40×60 → S/2
    torch.testing.assert_close(kp[1], torch.tensor([float(S), float(S)], dtype=torch.float64))  # (W, H) → (S, S)
    torch.testing.assert_close(kp[5], torch.tensor([6 * S / 40, 6 * S / 60], dtype=torch.float64))
    assert item["visible"].dtype == torch.bool and item["visible"].tolist() == [True, True, False] + [True] * 12
    torch.testing.assert_close(item["bbox"], torch.tensor([6 * S / 40, 12 * S / 60, 24 * S / 40, 36 * S / 60],
                                                          dtype=torch.float64))


def test_cub_train_items_carry_no_eval_extras_and_need_no_part_files(cub_root):
    (cub_root / "bounding_boxes.txt").unlink()
    shutil.rmtree(cub_root / "parts")
    ds = CUBDataset(cub_root, "train", S, train=True)
    assert len(ds) == 2 and [ds.class_labels[i] for i in range(2)] == [0, 1]
    item = ds[1]
    assert set(item) == {"image", "index", "path", "label"} and item["image"].shape == (3, S, S)


def test_cub_split_derived_from_the_official_files_when_lists_are_missing(cub_root):
    (cub_root / "train_list.txt").unlink()
    (cub_root / "test_list.txt").unlink()
    assert CUBDataset(cub_root, "train", S).image_ids == [1, 3]
    assert CUBDataset(cub_root, "test", S, train=False).image_ids == [2]


def test_cub_malformed_lines_and_incomplete_parts(cub_root):
    write_lines(cub_root / "test_list.txt", [f"2 {CUB_FILES[2][0]}", "garbage"])
    with pytest.raises(DatasetFormatError, match=r"line 2 of .*test_list\.txt"):
        CUBDataset(cub_root, "test", S, train=False)
    write_lines(cub_root / "test_list.txt", [f"2 {CUB_FILES[2][0]}"])
    lines = (cub_root / "parts" / "part_locs.txt").read_text().splitlines()
    write_lines(cub_root / "parts" / "part_locs.txt", [ln for ln in lines if not ln.startswith("2 7 ")])
    with pytest.raises(DatasetFormatError, match="image id 2"):
        CUBDataset(cub_root, "test", S, train=False)


# --- CelebA ---------------------------------------------------------------------------------------------------
def test_celeba_landmarks_scaled_from_the_file_frame(celeba_root):
    ds = CelebADataset(celeba_root, "test", S, train=False)
    assert len(ds) == 2
    for index in range(2):
        item = ds[index]
        assert item["image"].shape == (3, S, S)
        expected = torch.tensor([[S / 2, S / 2], [S, S], [0, 0], [S / 4, S / 4], [S / 2, S]], dtype=torch.float64)
        torch.testing.assert_close(item["keypoints"], expected)
        assert item["visible"].dtype == torch.bool and item["visible"].all() and item["visible"].shape == (5,)


def test_celeba_squashes_with_opencv_first_and_reads_mafl_train(celeba_root):
    from training.data.reference_pixels import cv2  # without its side effect on Qt

    ds = CelebADataset(celeba_root, "mafl_train", 224, train=False)
    assert [f.name for f in ds.files] == ["000003.jpg"]
    path = celeba_root / "img_celeba" / "000003.jpg"  # 600×400: shrinking shows the cv2 squash (no antialias)
    squashed = cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (224, 224)), cv2.COLOR_BGR2RGB)
    out = ds[0]["image"]
    assert torch.equal(out, normalise(Image.fromarray(squashed)))
    assert float((out - eval_transform(224)(load_image(path))).abs().max()) > 0.1  # not Pillow's antialiased squash
    assert len(CelebADataset(celeba_root, "train", S)) == 2


def test_celeba_malformed_line(celeba_root):
    write_lines(celeba_root / "MAFL_test_lm.txt", [celeba_line("000001.jpg"), "000002.jpg,1,2,3"])
    with pytest.raises(DatasetFormatError, match=r"line 2 of .*MAFL_test_lm\.txt"):
        CelebADataset(celeba_root, "test", S, train=False)


# --- PartImageNet ---------------------------------------------------------------------------------------------
def test_partimagenet_ood_paths_dropped_images_and_gt(ood_root):
    calls = []

    def gt_mask_fn(annotations, height, width):
        calls.append((len(annotations), height, width))
        return coco_gt_mask(annotations, height, width)

    ds = PartImageNetDataset(ood_root, "ood", "test", S, train=False, gt_mask_fn=gt_mask_fn)
    assert len(ds) == 3 and ds.dropped == ["n02000000/n02000000_4.JPEG"]
    train_dir = ood_root / "train"
    assert [ds.image_path(i) for i in range(3)] == [train_dir / "n01440764" / "n01440764_1.JPEG",
                                                    train_dir / "n01440764" / "n01440764_2.JPEG",
                                                    train_dir / "n02000000" / "n02000000_3.JPEG"]
    items = [ds[i] for i in range(3)]
    assert [it["wnid"] for it in items] == ["n01440764", "n01440764", "n02000000"]
    first = items[0]
    assert first["image"].shape == (3, S, S) and (first["height"], first["width"]) == (40, 60)
    assert [a["id"] for a in first["annotations"]] == [1, 2]
    mask = first["gt_mask"]
    assert mask.shape == (40, 60)
    assert int(mask[20, 20]) == 1 and int(mask[20, 45]) == 4 and int(mask[38, 2]) == 0
    assert calls[0] == (2, 40, 60)


def test_partimagenet_train_never_computes_gt(ood_root):
    def forbidden(*_):
        raise AssertionError("gt_mask_fn called at train time")

    ds = PartImageNetDataset(ood_root, "ood", "train", S, train=True, gt_mask_fn=forbidden)
    item = ds[0]
    assert set(item) == {"image", "index", "path", "wnid"}


def test_partimagenet_seg_layout_and_collate(seg_root):
    ds = PartImageNetDataset(seg_root, "seg", "test", S, train=False, gt_mask_fn=coco_gt_mask)
    assert len(ds) == 2 and ds.dropped == ["n03000000_9.JPEG"]
    assert ds.image_path(1) == seg_root / "images" / "test" / "n03000000_8.JPEG"
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate)))
    assert batch["image"].shape == (2, 3, S, S) and batch["gt_mask"].shape == (2, 40, 60)
    assert isinstance(batch["annotations"], list) and [len(a) for a in batch["annotations"]] == [2, 1]
    assert batch["index"].tolist() == [0, 1] and batch["wnid"] == ["n01440764", "n03000000"]


def test_collate_keeps_ragged_tensors_per_item():
    batch = collate([{"m": torch.zeros(2, 3), "i": 0}, {"m": torch.zeros(4, 3), "i": 1}])
    assert isinstance(batch["m"], list) and batch["i"].tolist() == [0, 1]


def test_relative_path_accepts_both_separators_and_refuses_absolute():
    expected = Path("n01440764") / "n01440764_1.JPEG"
    assert relative_path("n01440764/n01440764_1.JPEG") == expected
    assert relative_path("n01440764\\n01440764_1.JPEG") == expected
    for bad in ("/abs/x.jpg", "C:\\x.jpg", ""):
        with pytest.raises(DatasetFormatError):
            relative_path(bad)


# --- image folder ---------------------------------------------------------------------------------------------
def test_image_folder_recursive_and_flat(folder_root):
    ds = ImageFolderDataset(folder_root, S, train=True)
    assert [p.name for p in ds.files] == ["a.jpg", "b.png", "c.jpg"]
    assert len(ImageFolderDataset(folder_root, S, train=False, recursive=False)) == 2
    item = ds[1]
    assert set(item) == {"image", "index", "path"} and item["image"].shape == (3, S, S)


# --- missing files: one sentence naming the path and the layout -----------------------------------------------
MISSING = [
    ("cub", "", "train", True, "CUB"),
    ("cub", "images", "train", True, "CUB"),
    ("cub", "train_list.txt+train_test_split.txt", "train", True, "train_list.txt"),
    ("cub", "bounding_boxes.txt", "test", False, "x y w h"),
    ("cub", "parts/part_locs.txt", "test", False, "visible"),
    ("celeba", "img_celeba", "test", False, "CelebA"),
    ("celeba", "MAFL_test_lm.txt", "test", False, "x5,y5"),
    ("celeba", "cele_train_lm.txt", "train", True, "x5,y5"),
    ("celeba", "MAFL_train_lm.txt", "mafl_train", False, "x5,y5"),
    ("partimagenet_ood", "train_test.json", "test", False, "prepare_partimagenet_ood"),
    ("partimagenet_ood", "train", "test", False, "train/<wnid>"),
    ("partimagenet_seg", "annotations/test/test.json", "test", False, "COCO"),
    ("partimagenet_seg", "images/test", "test", False, "images/test"),
    ("folder", "", None, True, "Image folder"),
]


@pytest.mark.parametrize("name,removed,split,train,hint", MISSING)
def test_missing_file_or_folder_is_named(request, name, removed, split, train, hint):
    root = request.getfixturevalue({"cub": "cub_root", "celeba": "celeba_root", "partimagenet_ood": "ood_root",
                                    "partimagenet_seg": "seg_root", "folder": "folder_root"}[name])
    build_dataset(name, root, split, S, train)  # complete: loads
    targets = [root / r for r in removed.split("+")] if removed else [root]
    for target in targets:
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetLayoutError) as info:
        build_dataset(name, root, split, S, train)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(targets[0]) in message and hint in message and "\n" not in message


def test_empty_image_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no image files"):
        ImageFolderDataset(tmp_path / "empty", S)


# --- corrupt images -------------------------------------------------------------------------------------------
@pytest.fixture
def corrupt_folder(folder_root) -> Path:
    (folder_root / "a2_bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder_root


def test_corrupt_image_skipped_in_training(corrupt_folder, caplog):
    ds = ImageFolderDataset(corrupt_folder, S, train=True)
    bad = [p.name for p in ds.files].index("a2_bad.jpg")
    with caplog.at_level(logging.WARNING):
        item = ds[bad]
    assert item["index"] == bad + 1 and item["image"].shape == (3, S, S)
    assert ds.skipped == 1
    assert any("a2_bad.jpg" in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert ds[bad]["index"] == bad + 1
    assert ds.skipped == 2 and not caplog.records  # warned once per file, counted every time


def test_corrupt_image_raises_in_evaluation(corrupt_folder):
    ds = ImageFolderDataset(corrupt_folder, S, train=False)
    bad = [p.name for p in ds.files].index("a2_bad.jpg")
    with pytest.raises(ImageLoadError, match="a2_bad.jpg"):
        ds[bad]


def test_all_unreadable_training_set_stops_with_a_clear_error(tmp_path):
    for name in ("x.jpg", "y.jpg"):
        (tmp_path / name).write_bytes(b"not an image")
    ds = ImageFolderDataset(tmp_path, S, train=True)
    with pytest.raises(ImageLoadError, match="all unreadable"):
        ds[0]


def test_skips_in_worker_processes_are_counted(corrupt_folder):
    ds = ImageFolderDataset(corrupt_folder, S, train=True)
    batches = list(DataLoader(ds, batch_size=4, num_workers=1, collate_fn=collate))
    assert ds.skipped == 1 and batches[0]["image"].shape == (4, 3, S, S)


def test_dataloader_augmentation_repeats_with_a_seeded_generator(folder_root):
    ds = ImageFolderDataset(folder_root, S, train=True)

    def images(seed: int) -> torch.Tensor:
        loader = DataLoader(ds, batch_size=3, num_workers=1, collate_fn=collate,
                            generator=torch.Generator().manual_seed(seed))
        return next(iter(loader))["image"]

    first = images(0)
    torch.testing.assert_close(first, images(0), atol=0, rtol=0)
    assert not torch.equal(first, images(1))


# --- factory --------------------------------------------------------------------------------------------------
def test_build_dataset_names_and_errors(cub_root, celeba_root, ood_root, seg_root, folder_root):
    built = {
        "cub": build_dataset("cub", cub_root, "test", S, False),
        "celeba": build_dataset("CelebA", celeba_root, "test", S, False),
        "partimagenet_ood": build_dataset("partimagenet_ood", ood_root, "train", S, True),
        "partimagenet_seg": build_dataset("partimagenet_seg", seg_root, "test", S, False),
        "folder": build_dataset("folder", folder_root, None, S, True, recursive=False),
    }
    assert set(built) == set(DATASET_NAMES)
    assert isinstance(built["cub"], CUBDataset) and isinstance(built["celeba"], CelebADataset)
    assert built["partimagenet_ood"].variant == "ood" and built["partimagenet_seg"].variant == "seg"
    assert isinstance(built["folder"], ImageFolderDataset) and len(built["folder"]) == 2
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'.*cub"):
        build_dataset("imagenet", folder_root, None, S, True)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        build_dataset("cub", cub_root, "val", S, True)
