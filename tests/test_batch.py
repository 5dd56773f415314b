"""Headless batch pre-annotation (mpae_core.batch and ``mpae-annotate batch``) on a tiny random model, CPU only."""
from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from app.main import main
from conftest import tiny_model
from mpae_core.annotation import AnnotationProject, ImageStatus
from mpae_core.annotation.export import coco_annotations_for
from mpae_core.annotation.parts import PartTable
from mpae_core.batch import BatchConfig, run_batch
from mpae_core.inference import _labels_and_confidence, label_map_at
from mpae_core.checkpoint import load_checkpoint, model_fingerprint, save_checkpoint
from mpae_core.images import load_image
from mpae_core.inference import PartPrediction, Predictor

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")  # annToMask under numpy 2

ROOT = Path(__file__).resolve().parents[1]
BROKEN = {"broken/truncated.jpg": "truncated", "broken/text.jpg": "not an image", "broken/zero.png": "empty"}
EXIF_ORIENTATION = 0x0112


# ----- fixtures -----------------------------------------------------------------------------------------------------
def _noise(rng: np.random.Generator, height: int, width: int, channels: int = 3) -> Image.Image:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))


def make_folder(root: Path) -> dict[str, tuple[int, int]]:
    """Good images (relpath → displayed (H, W)) and the BROKEN files, in ``root``."""
    rng = np.random.default_rng(0)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "broken").mkdir()
    good = {}

    def save(rel: str, image: Image.Image, size: tuple[int, int] | None = None, **kw) -> None:
        image.save(root / rel, **kw)
        good[rel] = size or (image.height, image.width)

    save("a.jpg", _noise(rng, 40, 56), quality=90)
    save("a.png", _noise(rng, 30, 30))  # same mask name as a.jpg: both keep their full names
    save("gray.png", _noise(rng, 33, 47, channels=1))
    save("alpha.png", _noise(rng, 25, 61, channels=4))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # stored 60 wide x 36 high, displayed rotated: 36 wide x 60 high
    save("rotated.jpg", _noise(rng, 36, 60), size=(60, 36), exif=exif)
    save("sub/nested.jpg", _noise(rng, 50, 44))
    save("sub/deeper/ünïcødé 猫.png", _noise(rng, 28, 39))
    save("sub/deeper/wide.jpg", _noise(rng, 20, 90))
    buffer = root / "broken" / "full.tmp"
    _noise(rng, 64, 64).save(buffer, format="JPEG", quality=95)
    data = buffer.read_bytes()
    buffer.unlink()
    (root / "broken" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "broken" / "text.jpg").write_text("this is not a JPEG\n", encoding="utf-8")
    (root / "broken" / "zero.png").write_bytes(b"")
    return good


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    model = tiny_model()
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", embed_backbone=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int]]]:
    root = tmp_path_factory.mktemp("images")
    return root, make_folder(root)


@pytest.fixture(scope="module")
def first_run(folder, checkpoint, tmp_path_factory):
    """One run with OUT inside IMAGES (it must not be listed as images by later runs)."""
    root, good = folder
    out = root / "_annotations"
    code = main(["batch", str(root), "--checkpoint", str(checkpoint), "--out", str(out), "--recursive",
                 "--workers", "2", "--batch-size", "3"])
    return code, out


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def mask_of(out: Path, entry: dict) -> np.ndarray:
    with Image.open(out / entry["mask"]) as im:
        assert im.mode == "P"
        return np.asarray(im)


def masks_of(out: Path) -> dict[str, np.ndarray]:
    """Every mask a run wrote, by image file."""
    return {e["file"]: mask_of(out, e) for e in report_of(out)["images"] if e["mask"]}


def assert_coco_matches_masks(out: Path, report: dict) -> None:
    """COCO loads with pycocotools and its annotations decode to exactly the PNG masks of the finished images."""
    coco = COCO(str(out / "coco.json"))
    done = {e["file"]: e for e in report["images"] if e["status"] in ("ok", "skipped")}
    images = {img["file_name"]: img for img in coco.dataset["images"]}
    assert set(images) == set(done)
    assert len({img["id"] for img in images.values()}) == len(images)
    ann_ids = [a["id"] for a in coco.dataset["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids)
    for name, entry in done.items():
        mask = mask_of(out, entry)
        img = images[name]
        assert (img["height"], img["width"]) == mask.shape
        decoded = np.zeros_like(mask)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            decoded[coco.annToMask(ann) > 0] = ann["category_id"]
        np.testing.assert_array_equal(decoded, mask, err_msg=name)


# ----- the fast label maps and RLE equal the reference functions --------------------------------------------------
@pytest.mark.parametrize("size", [(480, 640), (61, 37), (16, 16), (7, 200), (3, 2)])
def test_label_map_at_equals_the_full_upsampling(size):
    generator = torch.Generator().manual_seed(sum(size))
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 17, 16, 16, generator=generator) * 4, 3, 1, 1)[0]
    noisy = torch.randn(9, 14, 12, generator=generator)
    for logits in (smooth, noisy):
        reference = _labels_and_confidence(logits, size)[0]  # argmax of the full bilinear upsampling
        fast = label_map_at(logits, size)
        assert fast.dtype == reference.dtype and fast.shape == reference.shape
        differ = fast != reference
        if differ.any():  # allowed only where two channels tie to float rounding
            probs = PartPrediction.from_logits(logits, size).probabilities()
            top2 = np.sort(probs, axis=0)[-2:]
            assert (top2[1] - top2[0])[differ].max() < 1e-5


def test_label_map_at_in_bands_is_the_same(monkeypatch):
    import mpae_core.inference as inference

    logits = torch.randn(17, 16, 16, generator=torch.Generator().manual_seed(7))
    whole = label_map_at(logits, (300, 200))
    monkeypatch.setattr(inference, "BAND_BYTES", 4096)  # a few rows per band
    np.testing.assert_array_equal(label_map_at(logits, (300, 200)), whole)


def _per_label_encoding(indices: np.ndarray) -> list[dict]:
    """The plain way: one pycocotools encode per present label (the oracle for the run-based encoder)."""
    from pycocotools import mask as mask_utils

    annotations = []
    for index in [int(v) for v in np.unique(indices) if 0 < v < 255]:
        rle = mask_utils.encode(np.asfortranarray((indices == index).astype(np.uint8)))
        annotations.append({"category_id": index,
                            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
                            "area": int(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                            "iscrowd": 0})
    return annotations


def test_coco_annotations_for_equals_per_label_encoding():
    rng = np.random.default_rng(3)
    maps = [np.zeros((5, 7), np.uint8), np.full((4, 4), 255, np.uint8), np.full((6, 3), 2, np.uint8),
            rng.integers(0, 5, size=(23, 31)).astype(np.uint8)]
    blocky = np.kron(rng.integers(0, 4, size=(6, 8)), np.ones((9, 7), np.int64)).astype(np.uint8)
    blocky[:5, :5] = 255
    maps.append(blocky)
    for indices in maps:
        assert coco_annotations_for(indices) == _per_label_encoding(indices)


# ----- one run over a folder with broken files --------------------------------------------------------------------
def test_batch_reports_broken_files_and_exits_1(first_run, folder):
    code, out = first_run
    root, good = folder
    assert code == 1
    report = report_of(out)
    failed = {e["file"]: e["error"] for e in report["errors"]}
    assert set(failed) == set(BROKEN)
    for rel, reason in BROKEN.items():
        assert reason in failed[rel] and rel.split("/")[-1] in failed[rel]
    statuses = {e["file"]: e["status"] for e in report["images"]}
    assert statuses == {**{rel: "ok" for rel in good}, **{rel: "error" for rel in BROKEN}}
    assert report["totals"]["ok"] == len(good) and report["totals"]["error"] == len(BROKEN)
    assert report["checkpoint"]["format"] == "mpae-safetensors" and report["device"] == "cpu"
    assert "torch" in report["versions"]
    assert (out / "labels.txt").read_text(encoding="utf-8").splitlines() == [
        "background", "part_01", "part_02", "part_03", "part_04"]
    assert set(json.loads((out / "labels.json").read_text(encoding="utf-8"))) == {"0", "1", "2", "3", "4", "255"}


def test_every_good_image_has_its_own_mask_at_its_displayed_size(first_run, folder):
    code, out = first_run
    _, good = folder
    entries = {e["file"]: e for e in report_of(out)["images"]}
    masks = {entries[rel]["mask"] for rel in good}
    assert len(masks) == len(good)
    assert {"masks/a.jpg.png", "masks/a.png.png", "masks/sub/deeper/ünïcødé 猫.png"} <= masks
    for rel, size in good.items():
        mask = mask_of(out, entries[rel])
        assert mask.shape == size, rel
        assert mask.max() <= 4


def test_masks_are_the_models_label_maps(first_run, folder, checkpoint):
    """The pipeline's masks are what the app's Predictor gives for each image alone (batching changes nothing)."""
    from mpae_core.checkpoint import load_checkpoint

    code, out = first_run
    root, good = folder
    model = load_checkpoint(checkpoint)
    predictor = Predictor(model, "cpu")
    table = PartTable.from_model_info(model.info.part_names, model.info.part_colors)
    entries = {e["file"]: e for e in report_of(out)["images"]}
    for rel in ("rotated.jpg", "sub/deeper/ünïcødé 猫.png", "alpha.png"):
        expected = table.to_export(predictor.predict_one(load_image(root / rel)).label_map())
        agree = (mask_of(out, entries[rel]) == expected).mean()
        assert agree > 0.999, (rel, agree)


def test_label_maps_made_on_the_device_give_the_same_masks(first_run, folder, checkpoint, tmp_path):
    """maps_on_device (the default on a GPU) moves the label maps from the encoders to the model's device; on the
    CPU here it must write the same masks and COCO file as the encoders' label_map_at (ties to float rounding
    aside)."""
    code, out = first_run
    root, good = folder
    config = BatchConfig(images=root, checkpoint=checkpoint, out=tmp_path / "out", recursive=True, workers=1,
                         encoders=1, batch_size=3, maps_on_device=True)
    report = run_batch(config)
    assert report.count("ok") == len(good)
    encoder_masks, device_masks = masks_of(out), masks_of(tmp_path / "out")
    for rel in good:
        device_mask, encoder_mask = device_masks[rel], encoder_masks[rel]
        assert device_mask.shape == encoder_mask.shape
        assert (device_mask == encoder_mask).mean() > 0.999, rel
    assert_coco_matches_masks(tmp_path / "out", report_of(tmp_path / "out"))


def test_images_resized_on_the_device_give_identical_masks(first_run, folder, checkpoint, tmp_path, monkeypatch):
    """resize_on_device ships decoded images at full size and resizes them where the model runs, with Pillow's
    exact arithmetic: the masks must equal the CPU path's bit for bit. A low size limit makes the larger images
    take the worker-resize path, so batches mix both."""
    import mpae_core.batch.decode as decode

    monkeypatch.setattr(decode, "FULL_SIZE_MAX_PIXELS", 2000)  # a.jpg (40x56) and wide.jpg (20x90) are over it
    code, out = first_run
    root, good = folder
    config = BatchConfig(images=root, checkpoint=checkpoint, out=tmp_path / "out", recursive=True, workers=2,
                         encoders=1, batch_size=3, maps_on_device=False, resize_on_device=True)
    report = run_batch(config)
    assert report.count("ok") == len(good)
    cpu_masks, device_masks = masks_of(out), masks_of(tmp_path / "out")
    for rel in good:
        np.testing.assert_array_equal(device_masks[rel], cpu_masks[rel], err_msg=rel)


def test_model_input_resizes_full_size_images_like_the_workers():
    from mpae_core.batch.decode import collate, model_input
    from mpae_core.inference import resize_for_model

    rng = np.random.default_rng(5)
    images = [_noise(rng, 30, 40), _noise(rng, 50, 20), _noise(rng, 30, 40), _noise(rng, 33, 33)]
    records = []
    for i, image in enumerate(images):
        full = i != 1  # one image resized "in the worker", three at full size (two of one size)
        pixels = torch.from_numpy(np.array(image)) if full else resize_for_model(image, 28)
        records.append({"index": i, "relpath": f"{i}.png", "pixels": pixels, "resized": not full, "error": None,
                        "size": (image.height, image.width)})
    records.insert(2, {"index": 9, "relpath": "bad.png", "pixels": None, "error": "broken", "size": None})
    batch = collate(records)
    good = [r for r in batch["records"] if r["error"] is None]
    expected = torch.stack([resize_for_model(image, 28) for image in images])
    assert torch.equal(model_input(batch, good, 28, torch.device("cpu")), expected)


def test_map_arena_hands_out_slots_and_falls_back_when_full_or_too_big():
    from mpae_core.batch.encode import MapArena

    arena = MapArena(slots=2, slot_bytes=1000)
    a, b = np.arange(600, dtype=np.uint8).reshape(20, 30), np.full((10, 40), 7, dtype=np.uint8)
    slot, offsets = arena.put([a, b])
    np.testing.assert_array_equal(arena.view(offsets[0], a.shape), a)
    np.testing.assert_array_equal(arena.view(offsets[1], b.shape), b)
    assert arena.put([np.zeros((40, 30), np.uint8)]) is None  # 1200 bytes: more than a slot
    other, _ = arena.put([b])
    assert other != slot and arena.put([b]) is None  # both slots in use
    arena.release(slot)
    assert arena.put([b])[0] == slot


def test_encoder_processes_read_device_maps_from_shared_memory(folder, checkpoint, tmp_path, monkeypatch):
    """With maps made on the device, encoder processes get them through the MapArena (nothing pickled but
    offsets) and write the same masks; a tiny arena forces some chunks onto the pickled path too."""
    import mpae_core.batch.encode as encode

    shared = []
    original = encode.Encoders._share_maps

    def spy(self, jobs):
        slot = original(self, jobs)
        shared.append(slot is not None)
        return slot

    monkeypatch.setattr(encode.Encoders, "_share_maps", spy)
    monkeypatch.setattr(encode, "ARENA_BYTES_PER_MAP", 2000)  # 2-image slots of 4000 bytes: big images don't fit
    root, good = folder
    outs = {}
    for name, maps_on_device in (("arena", True), ("encoders", False)):
        config = BatchConfig(images=root, checkpoint=checkpoint, out=tmp_path / name, recursive=True, workers=0,
                             encoders=2, batch_size=4, maps_on_device=maps_on_device)
        assert run_batch(config).count("ok") == len(good)
        outs[name] = masks_of(tmp_path / name)
    assert any(shared) and not all(shared), shared  # some chunks through the arena, some pickled
    for rel in good:
        assert (outs["arena"][rel] == outs["encoders"][rel]).mean() > 0.999, rel


def test_cpu_split_between_decoders_and_encoders_follows_where_the_maps_are_made(monkeypatch):
    import mpae_core.batch.config as batch_config

    monkeypatch.setattr(batch_config, "available_cpus", lambda: 16)
    def split(**placement) -> tuple[int, int]:
        config = BatchConfig(images=".", checkpoint=None, out="o", **placement)
        return config.num_workers, config.num_encoders

    assert split(maps_on_device=False, resize_on_device=False) == (6, 9)  # CPU-only work: 4.5 vs 7.7 ms per image
    assert split(maps_on_device=True, resize_on_device=False) == (9, 6)  # the device makes the label maps
    assert split(maps_on_device=True, resize_on_device=True) == (6, 9)  # ... and resizes the images
    assert split(workers=3, encoders=2) == (3, 2)
    monkeypatch.setattr(batch_config, "available_cpus", lambda: 2)
    assert split() == (1, 1)


def test_coco_decodes_to_the_png_masks(first_run):
    code, out = first_run
    assert_coco_matches_masks(out, report_of(out))


# ----- re-runs ------------------------------------------------------------------------------------------------------
def test_rerun_skips_finished_images_and_keeps_coco_complete(first_run, folder, checkpoint):
    code, out = first_run
    root, good = folder
    before = {p: p.stat().st_mtime_ns for p in (out / "masks").rglob("*.png")}
    next(iter((out / ".mpae-batch").rglob("*.json"))).unlink()  # a lost cache file: derived again from the PNG
    again = main(["batch", str(root), "--checkpoint", str(checkpoint), "--out", str(out), "--recursive",
                  "--workers", "0"])
    assert again == 1  # the broken files still fail
    report = report_of(out)
    statuses = {e["file"]: e["status"] for e in report["images"]}
    assert statuses == {**{rel: "skipped" for rel in good}, **{rel: "error" for rel in BROKEN}}
    assert {p: p.stat().st_mtime_ns for p in (out / "masks").rglob("*.png")} == before
    assert_coco_matches_masks(out, report)

    redo = main(["batch", str(root), "--checkpoint", str(checkpoint), "--out", str(out), "--recursive",
                 "--workers", "0", "--overwrite"])
    assert redo == 1
    report = report_of(out)
    assert {e["file"]: e["status"] for e in report["images"]} == {
        **{rel: "ok" for rel in good}, **{rel: "error" for rel in BROKEN}}
    after = {p: p.stat().st_mtime_ns for p in (out / "masks").rglob("*.png")}
    assert set(after) == set(before) and all(after[p] != before[p] for p in before)
    assert_coco_matches_masks(out, report)


def three_images(folder: Path, seed: int) -> Path:
    """im0..im2.png, 20-22 x 30 noise, in ``folder``."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(3):
        _noise(rng, 20 + i, 30).save(folder / f"im{i}.png")
    return folder


def test_clean_folder_exits_0_and_png_only_format(checkpoint, tmp_path, capsys):
    images = three_images(tmp_path / "imgs", seed=1)
    out = tmp_path / "out"
    assert main(["batch", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--format", "png",
                 "--workers", "0"]) == 0
    assert not (out / "coco.json").exists() and len(list((out / "masks").glob("*.png"))) == 3
    # a later COCO run skips the images and derives their annotations from the PNGs
    assert main(["batch", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--workers", "0"]) == 0
    report = report_of(out)
    assert {e["status"] for e in report["images"]} == {"skipped"}
    assert_coco_matches_masks(out, report)
    assert "3 images: 0 done, 3 skipped" in capsys.readouterr().out


def test_a_rerun_over_fewer_images_removes_their_masks_and_keeps_other_files(checkpoint, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        _noise(rng, 20, 24 + i).save(images / f"im{i}.png")
    out = tmp_path / "out"
    args = ["batch", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--workers", "0"]
    assert main(args) == 0
    (out / "README.txt").write_text("my notes")
    (images / "im1.png").unlink()
    assert main(args) == 0
    assert sorted(p.name for p in (out / "masks").glob("*.png")) == ["im0.png", "im2.png"]
    assert sorted(p.name for p in (out / ".mpae-batch").rglob("*.json")) == ["im0.png.json", "im2.png.json"]
    report = report_of(out)
    assert [e["status"] for e in report["images"]] == ["skipped", "skipped"]
    assert_coco_matches_masks(out, report)
    assert (out / "README.txt").read_text() == "my notes"


def test_yolo_labelme_cvat_voc_and_coco_polygons_come_from_the_masks(checkpoint, tmp_path):
    """Derived formats: written at the end through the app's exporter from the PNG masks (written even without
    'png'), and rebuilt by a re-run that skips every image."""
    images = three_images(tmp_path / "imgs", seed=2)
    out = tmp_path / "out"
    args = ["batch", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--workers", "0",
            "--format", "coco,yolo,labelme,cvat,voc", "--coco-style", "polygons"]
    assert main(args) == 0
    report = report_of(out)
    assert report["coco_style"] == "polygons" and report["formats"] == ["coco", "yolo", "labelme", "cvat", "voc"]
    masks = masks_of(out)
    assert sorted(masks) == ["im0.png", "im1.png", "im2.png"]
    assert_coco_matches_masks(out, report)
    coco = json.loads((out / "coco.json").read_text(encoding="utf-8"))
    assert all(isinstance(a["segmentation"], list) for a in coco["annotations"])
    assert not list((out / ".mpae-batch").rglob("*.png.json"))  # no RLE caches (<mask>.json) for a polygon COCO
    assert sorted(p.name for p in (out / "yolo" / "labels").iterdir()) == ["im0.txt", "im1.txt", "im2.txt"]
    assert (out / "yolo" / "images" / "im1.png").read_bytes() == (images / "im1.png").read_bytes()
    assert (out / "yolo" / "data.yaml").is_file()
    labelme = json.loads((out / "labelme" / "im2.json").read_text(encoding="utf-8"))
    assert (out / "labelme" / labelme["imagePath"]).resolve() == (images / "im2.png").resolve()
    assert len(ET.parse(out / "cvat" / "annotations.xml").getroot().findall("image")) == 3
    for name, mask in masks.items():
        with Image.open(out / "voc" / "SegmentationClass" / name) as voc:
            assert np.array_equal(np.asarray(voc), mask)
    (out / "cvat" / "annotations.xml").unlink()
    assert main(args) == 0
    assert {e["status"] for e in report_of(out)["images"]} == {"skipped"}
    assert len(ET.parse(out / "cvat" / "annotations.xml").getroot().findall("image")) == 3


def test_another_checkpoint_redoes_everything(checkpoint, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    _noise(np.random.default_rng(2), 20, 20).save(images / "one.png")
    out = tmp_path / "out"
    args = ["batch", str(images), "--out", str(out), "--workers", "0", "--checkpoint"]
    assert main(args + [str(checkpoint)]) == 0
    other = save_checkpoint(tiny_model(seed=1), tmp_path / "other.safetensors", embed_backbone=True)
    assert main(args + [str(other)]) == 0
    assert report_of(out)["images"][0]["status"] == "ok"


# ----- API: progress and cancel (what the GUI uses) ---------------------------------------------------------------
def test_run_batch_reports_progress_and_can_be_cancelled(folder, checkpoint, tmp_path):
    root, good = folder
    cancel = threading.Event()
    events = []

    def progress(event) -> None:
        events.append(event)
        cancel.set()

    config = BatchConfig(images=root, checkpoint=checkpoint, out=tmp_path / "out", recursive=True, workers=0,
                         encoders=0, batch_size=2)  # all in this process: the thread path of the encoders
    report = run_batch(config, progress=progress, cancel=cancel)
    assert report.cancelled and not report.succeeded
    statuses = [r.status for r in report.images]
    assert "cancelled" in statuses and "ok" in statuses
    assert events[-1].done == len(statuses) - statuses.count("cancelled") and events[-1].total == len(statuses)
    saved = report_of(tmp_path / "out")
    assert saved["cancelled"] and saved["totals"]["cancelled"] == statuses.count("cancelled")
    assert_coco_matches_masks(tmp_path / "out", saved)


# ----- usage errors, Qt, the authors' checkpoint -------------------------------------------------------------------
def test_bad_checkpoint_exits_2_with_one_line(folder, tmp_path, capsys):
    root, _ = folder
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00" * 10)
    for checkpoint in (bad, tmp_path / "missing.safetensors"):
        assert main(["batch", str(root), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and str(checkpoint) in err
        assert not (tmp_path / "out").exists()


def test_bad_folder_exits_2_with_one_line(checkpoint, tmp_path, capsys):
    for images in (tmp_path / "nowhere", checkpoint):
        assert main(["batch", str(images), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["batch", str(empty), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert "No images found" in capsys.readouterr().err
    assert main(["batch", str(empty), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                 "--format", "tiff"]) == 2


def test_batch_runs_without_qt_or_a_display(checkpoint, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    _noise(np.random.default_rng(4), 24, 24).save(images / "x.jpg")
    code = ("import sys; from app.main import main; "
            f"rc = main(['batch', {str(images)!r}, '--checkpoint', {str(checkpoint)!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--workers', '1']); "
            "assert 'PySide6' not in sys.modules, 'Qt was imported'; sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "1 images: 1 done" in done.stdout


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_decoding_worker_error_ends_the_run_with_one_sentence(checkpoint, tmp_path):
    """A failure in a decoding worker process outside the per-file handling (forked workers inherit the patch):
    exit 2 with one line within seconds, not a traceback and a hang (the workers ignore SIGTERM)."""
    images = tmp_path / "imgs"
    images.mkdir()
    _noise(np.random.default_rng(6), 24, 24).save(images / "x.jpg")
    code = ("import multiprocessing, sys; multiprocessing.set_start_method('fork', force=True); "
            "import mpae_core.batch.decode as decode; from app.main import main\n"
            "def broken(self, i): raise TypeError('injected worker failure')\n"
            "decode.ImageDataset.__getitem__ = broken\n"
            f"sys.exit(main(['batch', {str(images)!r}, '--checkpoint', {str(checkpoint)!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--workers', '2', '--device', 'cpu']))")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"batch did not exit after a worker error: {exc.stderr!r:.2000}")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "TypeError: injected worker failure" in last and "--workers 0" in last


def test_authors_pth_checkpoint(official_celeba_path, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    _noise(np.random.default_rng(5), 40, 30).save(images / "face.jpg")
    out = tmp_path / "out"
    assert main(["batch", str(images), "--checkpoint", str(official_celeba_path), "--out", str(out),
                 "--workers", "0"]) == 0
    report = report_of(out)
    assert report["checkpoint"]["format"] == "official-pth" and report["checkpoint"]["num_parts"] == 16
    assert mask_of(out, report["images"][0]).shape == (40, 30)


# ----- torchrun ---------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_ranks_match_one_process(first_run, folder, checkpoint, tmp_path):
    """torchrun with 2 CPU ranks (gloo): the same masks as one process, one merged coco.json (~10 s)."""
    code, single = first_run
    root, good = folder
    out = tmp_path / "ranks"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "app.main", "batch", str(root), "--checkpoint", str(checkpoint), "--out",
               str(out), "--recursive", "--workers", "0", "--device", "cpu", "--batch-size", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode != 0, "broken files must make the job fail"
    # torchrun prints its own ChildFailedError traceback for a non-zero exit; nothing of ours may crash
    assert done.stderr.count("Traceback") == done.stderr.count("ChildFailedError: ") == 1, done.stderr[-3000:]
    assert "exitcode  : 1" in done.stderr and "5 images" not in done.stdout
    report = report_of(out)
    assert report["world_size"] == 2 and len(report["devices"]) == 2
    assert {e["file"] for e in report["errors"]} == set(BROKEN)
    assert not list(out.glob("*.rank*.json"))
    assert_coco_matches_masks(out, report)
    expected = {e["file"]: e for e in report_of(single)["images"] if e["status"] != "error"}
    for entry in report["images"]:
        if entry["status"] == "ok":
            assert entry["mask"] == expected[entry["file"]]["mask"]
            np.testing.assert_array_equal(mask_of(out, entry), mask_of(single, expected[entry["file"]]))
    assert {e["file"] for e in report["images"] if e["status"] == "ok"} == set(good)
    # one project: each rank wrote its images' predictions, rank 0 recorded them all and removed the hand-ins
    project = AnnotationProject.open(out, write=False)
    assert not list((out / ".mpae-batch").glob("project.rank*"))
    fingerprint = model_fingerprint(load_checkpoint(checkpoint))
    assert project.model_family == [fingerprint] and set(project.relpaths()) == set(good) | set(BROKEN)
    for entry in report["images"]:
        record = project.record(entry["file"])
        if entry["status"] == "error":
            assert record.status is ImageStatus.ERROR and record.error == entry["error"]
            continue
        assert record.status is ImageStatus.PREDICTED and record.model == fingerprint
        np.testing.assert_array_equal(project.parts.to_export(project.label_map(entry["file"])), mask_of(out, entry))
