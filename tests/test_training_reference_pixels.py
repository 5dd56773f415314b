"""Evaluation inputs equal the reference's bit for bit: OpenCV decode (and CelebA's OpenCV squash), torchvision v1's
ToTensor + Normalize, and keypoints scaled in float64 in the reference's order.

The reference steps below are written from docs/mpae-reference.md (§2 "CelebA first squashes every image to S×S with
``cv2.resize`` (bilinear)", "Test transform: Resize((S,S)) squash, antialias on, then ToTensor and Normalize"; §5
"All loaders read with cv2 and convert to RGB, then build a PIL image", "Landmarks are divided by the loaded image's
width/height"; §4.1 "normalised by x/S·2−1, grid_sample (nearest, align_corners False)").
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from training.data.reference_pixels import cv2  # imported without its side effect on Qt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader

from mpae_core.images import ImageLoadError
from mpae_core.inference import IMAGENET_MEAN, IMAGENET_STD, preprocess
from training.data import (CelebADataset, CUBDataset, DatasetEntryError, DatasetFormatError, PartImageNetDataset,
                           collate, eval_transform, train_transform)
from training.data.transforms import AugmentConfig
from training.metrics import sample_keypoint_labels

S = 224
MAP = 128  # the reference samples keypoints on 128×128 maps


# --- the reference's steps ------------------------------------------------------------------------------------
def reference_test_transform(size: int) -> T.Compose:
    return T.Compose([T.Resize((size, size), antialias=True), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def reference_pixels(path: Path) -> np.ndarray:
    """cv2.imread (BGR), then the channel swap to RGB."""
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def reference_celeba(path: Path, landmarks: np.ndarray, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """CelebA test item: OpenCV squash to S×S of the BGR image, channel swap, PIL, test transform; landmarks divided
    by the file's width/height, then times S, in float64."""
    bgr = cv2.imread(str(path))
    height, width = bgr.shape[:2]
    squashed = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    points = np.array(landmarks, dtype=np.float64)
    points[:, 0] = points[:, 0] / width * size
    points[:, 1] = points[:, 1] / height * size
    return reference_test_transform(size)(Image.fromarray(squashed)), points


def reference_labels(probs: torch.Tensor, points: np.ndarray, size: int) -> torch.Tensor:
    """Part label at each keypoint: (x/S·2−1, y/S·2−1) in float64, to float32, nearest grid_sample, argmax."""
    grid = torch.from_numpy(points).unsqueeze(2).clone()  # [B, P, 1, 2] float64
    grid[..., 0] /= size
    grid[..., 1] /= size
    grid = grid * 2 - 1
    sampled = F.grid_sample(probs, grid.float(), mode="nearest", align_corners=False)
    return sampled.argmax(dim=1).squeeze(2)


# --- a tiny CelebA/MAFL folder in the real layout --------------------------------------------------------------
def photo(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth shading plus noise and an edge, so that squash rounding and JPEG subsampling both show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    a = np.stack([128 + 90 * np.sin(x / 7.0 + c) * np.cos(y / 11.0 - c) for c in range(3)], axis=-1)
    a = a + rng.normal(0, 18, a.shape)
    a[height // 3: height // 2, width // 4: width // 2] = (240, 20, 40)
    return np.clip(a, 0, 255).astype(np.uint8)


# (width, height) → landmarks: CelebA's 178×218; shrinking and enlarging; odd sizes; and points whose squashed
# position falls exactly between two map cells, where float32 arithmetic picked the other cell than the reference
CELEBA_CASES = {
    (178, 218): [(89, 109), (60.5, 80.25), (120, 150), (70, 170), (110, 171)],
    (500, 375): [(250, 187), (125, 93), (375, 281), (1, 1), (499, 374)],
    (97, 61): [(48, 30), (10, 10), (90, 55), (50.5, 30.5), (0, 0)],
    (333, 501): [(166, 250), (100, 200), (300, 450), (200, 100), (320, 490)],
    (224, 224): [(112, 112), (7, 7), (14, 21), (100, 200), (223, 223)],
    (166, 184): [(83, 92), (83, 161), (166, 92), (40, 40), (120, 100)],
    (192, 201): [(51, 201), (54, 100), (96, 100), (192, 50), (10, 150)],
}


@pytest.fixture
def celeba_folder(tmp_path) -> Path:
    root = tmp_path / "CelebA"
    (root / "img_celeba").mkdir(parents=True)
    lines = []
    for i, ((w, h), points) in enumerate(CELEBA_CASES.items()):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(photo(w, h, seed=i)).save(root / "img_celeba" / name, quality=90)  # 4:2:0, like CelebA
        lines.append(",".join([name] + [f"{v:g}" for p in points for v in p]))
    for list_name in ("MAFL_test_lm.txt", "MAFL_train_lm.txt", "cele_train_lm.txt"):
        (root / list_name).write_text("\n".join(lines) + "\n")
    return root


def test_celeba_evaluation_inputs_equal_the_reference_preprocessing(celeba_folder):
    ds = CelebADataset(celeba_folder, "test", S, train=False)
    batch = next(iter(DataLoader(ds, batch_size=len(ds), collate_fn=collate)))
    expected = [reference_celeba(celeba_folder / "img_celeba" / f.name, ds.landmarks[i], S)
                for i, f in enumerate(ds.files)]
    for i, (image, points) in enumerate(expected):
        assert torch.equal(batch["image"][i], image), f"pixels of {ds.files[i]} differ from the reference's"
        assert np.array_equal(batch["keypoints"][i].numpy(), points), f"landmarks of {ds.files[i]} differ"
    # the labels read at the landmarks: maps whose argmax is the parity of the cell's column (or row), so that a
    # point read from the neighbouring cell gets the other label
    columns = torch.arange(MAP) % 2
    for parity in (columns.view(1, MAP).expand(MAP, MAP), columns.view(MAP, 1).expand(MAP, MAP)):
        probs = torch.stack([parity.float(), torch.full((MAP, MAP), 0.5)]).expand(len(ds), 2, MAP, MAP)
        ours = sample_keypoint_labels(probs, batch["keypoints"], S)
        reference = reference_labels(probs.contiguous(), np.stack([p for _, p in expected]), S)
        assert np.array_equal(ours.pred, reference.reshape(-1).numpy())


def test_celeba_training_presquash_is_the_reference_squash(celeba_folder):
    ds = CelebADataset(celeba_folder, "train", S, train=True, augment=AugmentConfig(enabled=False))
    for i, f in enumerate(ds.files):
        path = celeba_folder / "img_celeba" / f.name
        squashed = cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (S, S)), cv2.COLOR_BGR2RGB)
        image, size = ds.load(i)
        assert np.array_equal(np.asarray(image), squashed) and size == tuple(CELEBA_CASES)[i]


# --- normalisation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(224, 224), (178, 218), (500, 375), (61, 97)])
def test_eval_transform_is_torchvision_v1_to_tensor_and_normalize_bit_for_bit(size):
    image = Image.fromarray(photo(*size, seed=5))
    expected = reference_test_transform(S)(image)
    assert torch.equal(eval_transform(S)(image), expected)
    assert torch.equal(train_transform(S, AugmentConfig(enabled=False))(image), expected)
    assert torch.equal(preprocess(image, S), expected)  # the app's inference sees the same pixels


# --- OpenCV decode on every benchmark ---------------------------------------------------------------------------
def write_unusual_images(folder: Path) -> dict[str, Path]:
    """Files whose decode differs between Pillow and OpenCV, and an ordinary JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = photo(60, 40, seed=1)
    files = {"plain": folder / "plain.jpg", "cmyk": folder / "cmyk.jpg", "alpha": folder / "alpha.png",
             "deep": folder / "deep.png", "rotated": folder / "rotated.jpg"}
    Image.fromarray(rgb).save(files["plain"], quality=90)
    Image.fromarray(rgb).convert("CMYK").save(files["cmyk"], quality=90)
    alpha = np.random.default_rng(2).integers(0, 256, (40, 60, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1)).save(files["alpha"])
    cv2.imwrite(str(files["deep"]), (rgb.astype(np.uint16) * 257 + 100)[..., ::-1].copy())
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(rgb).save(files["rotated"], quality=90, exif=exif)
    return files


def test_benchmark_images_are_decoded_as_opencv_decodes_them(tmp_path):
    root = tmp_path / "CUB"
    files = write_unusual_images(root / "images" / "001.Bird")
    names = list(files)
    (root / "test_list.txt").write_text("".join(f"{i + 1} 001.Bird/{files[n].name}\n" for i, n in enumerate(names)))
    (root / "bounding_boxes.txt").write_text("".join(f"{i + 1} 1 2 30 20\n" for i in range(len(names))))
    (root / "parts").mkdir()
    (root / "parts" / "part_locs.txt").write_text("".join(
        f"{i + 1} {p} {p}.0 {p + 1}.0 1\n" for i in range(len(names)) for p in range(1, 16)))
    ds = CUBDataset(root, "test", 56, train=False)
    for i, name in enumerate(names):
        pixels = reference_pixels(files[name])
        item = ds[i]
        assert torch.equal(item["image"], reference_test_transform(56)(Image.fromarray(pixels))), name
        height, width = pixels.shape[:2]
        points = (np.arange(1, 16, dtype=np.float64)[:, None] + [0, 1]) * 56 / np.array([width, height], float)
        assert np.array_equal(item["keypoints"].numpy(), points), name
    assert ds[names.index("rotated")]["image"].shape == (3, 56, 56)
    assert reference_pixels(files["rotated"]).shape == (60, 40, 3)  # OpenCV applies EXIF orientation too


def test_an_image_opencv_cannot_read_is_named(tmp_path):
    from training.data.reference_pixels import read_rgb

    (tmp_path / "junk.jpg").write_bytes(b"this is text, not a picture")
    for path, reason in ((tmp_path / "junk.jpg", "not an image"), (tmp_path / "gone.jpg", "does not exist")):
        with pytest.raises(ImageLoadError, match=reason) as info:
            read_rgb(path)
        assert str(path) in str(info.value)


# --- malformed dataset entries: one sentence, before anything hangs ----------------------------------------------
def seg_folder(tmp_path: Path, annotation: dict) -> Path:
    root = tmp_path / "PartImageNet_Seg"
    (root / "images" / "test").mkdir(parents=True)
    Image.fromarray(photo(60, 40, seed=3)).save(root / "images" / "test" / "n01_1.JPEG")
    good = {"id": 1, "image_id": 1, "category_id": 0, "iscrowd": 0, "area": 100, "bbox": [1, 1, 10, 10],
            "segmentation": [[1, 1, 11, 1, 11, 11, 1, 11]]}
    coco = {"images": [{"id": 1, "file_name": "n01_1.JPEG", "height": 40, "width": 60}],
            "annotations": [good, {**good, "id": 7, **annotation}], "categories": [{"id": 0, "name": "head"}]}
    (root / "annotations" / "test").mkdir(parents=True)
    (root / "annotations" / "test" / "test.json").write_text(json.dumps(coco))
    return root


@pytest.mark.parametrize("annotation,hint", [
    ({"segmentation": [[1, 2, 3, 4]], "bbox": None}, "4-number polygon"),
    ({"segmentation": [[1, 2, 3, 4]], "bbox": [1, 2, 3]}, "bbox"),
    ({"category_id": None}, "category_id"),
    ({"segmentation": "polygon"}, "segmentation"),
    ({"segmentation": [[1, None, 3, 4, 5, 6]]}, "segmentation"),
    ({"area": None}, "area"),
])
def test_a_malformed_annotation_is_named_when_the_evaluation_set_is_built(tmp_path, annotation, hint):
    root = seg_folder(tmp_path, annotation)
    with pytest.raises(DatasetFormatError, match=hint) as info:
        PartImageNetDataset(root, "seg", "test", 56, train=False)
    message = str(info.value)
    assert "annotation 7" in message and "test.json" in message and "\n" not in message
    assert len(PartImageNetDataset(root, "seg", "test", 56, train=True)) == 1  # training never reads them


def test_a_4_number_polygon_with_a_bbox_is_the_bbox_rectangle_as_in_the_reference(tmp_path):
    from training.metrics import partimagenet_gt_mask

    root = seg_folder(tmp_path, {"category_id": 0, "segmentation": [[0, 0, 0, 0]], "bbox": [30, 20, 10, 5]})
    ds = PartImageNetDataset(root, "seg", "test", 56, train=False,
                             gt_mask_fn=lambda anns, h, w: partimagenet_gt_mask(anns, h, w, 1, out_size=None))
    mask = ds[0]["gt_mask"]
    assert int(mask[22, 35]) == 0 and int(mask[30, 50]) == 1  # inside the box: part 0; elsewhere: background


def test_a_failing_ground_truth_names_the_image_and_the_file(tmp_path):
    root = seg_folder(tmp_path, {})

    def broken(*_):
        raise TypeError("'NoneType' object is not iterable")

    ds = PartImageNetDataset(root, "seg", "test", 56, train=False, gt_mask_fn=broken)
    with pytest.raises(DatasetFormatError, match=r"n01_1\.JPEG in .*test\.json.*TypeError") as info:
        ds[0]
    assert "\n" not in str(info.value)


def test_any_failure_of_a_sample_names_its_file(tmp_path, monkeypatch):
    root = seg_folder(tmp_path, {})
    ds = PartImageNetDataset(root, "seg", "test", 56, train=False)
    monkeypatch.setattr(PartImageNetDataset, "labels", lambda self, index: {"x": [][1]})
    with pytest.raises(DatasetEntryError, match=r"sample 0 \(.*n01_1\.JPEG\).*IndexError") as info:
        ds[0]
    assert "\n" not in str(info.value)


# --- the other OpenCV step of the reference's evaluation: PartImageNet's ground truth, INTER_NEAREST to 128×128 ------
@pytest.mark.parametrize("height,width", [(40, 60), (128, 128), (375, 500), (501, 333), (61, 97), (1, 7), (255, 129)])
def test_ground_truth_nearest_resize_is_opencvs(height, width):
    from training.metrics import resize_nearest

    labels = np.random.default_rng(height * width).integers(0, 41, (height, width)).astype(np.int64)
    for size in (128, (64, 32)):
        expected = cv2.resize(labels, size if isinstance(size, tuple) else (size, size),
                              interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(resize_nearest(labels, size), expected)


def test_importing_opencv_leaves_qt_plugin_paths_alone():
    """OpenCV's GUI build (installed by Ultralytics over the headless one) would point Qt at its own plugins."""
    code = ("import os; import training.data.reference_pixels; "
            "print(os.environ.get('QT_QPA_PLATFORM_PLUGIN_PATH'), os.environ.get('QT_QPA_FONTDIR'))")
    repo = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_QPA_")}
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None"]
