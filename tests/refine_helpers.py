"""A tiny annotated project for the refinement and re-prediction tests: a random-weights model saved with its backbone
embedded (so loading it needs no download and no random fallback), a few generated images, all predicted."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import tiny_model
from mpae_core.annotation import AnnotationProject
from mpae_core.checkpoint import save_checkpoint
from mpae_core.images import load_image
from mpae_core.inference import Predictor

K = 4
SIZE = 56  # 4×4 feature grid: fast on a CPU
IMAGE_HW = (36, 44)


def tiny_checkpoint(path: Path, seed: int = 0, **overrides) -> Path:
    model = tiny_model(seed=seed, image_size=SIZE, group_size=2, **{"num_parts": K, **overrides})
    return save_checkpoint(model, path, embed_backbone=True)


def make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    height, width = IMAGE_HW
    for i in range(count):
        pixels = (rng.random((height, width, 3)) * 80).astype(np.uint8)
        pixels[8:28, 10 + i : 30 + i] = (220, 60 + 30 * i, 40)  # a bright object that moves a little
        Image.fromarray(pixels).save(folder / f"img_{i}.png")


def predicted_project(tmp_path: Path, count: int = 5, checkpoint: Path | None = None) -> AnnotationProject:
    """Images predicted with ``checkpoint`` (default: a fresh tiny one), saved; nothing edited or reviewed yet."""
    from mpae_core.checkpoint import load_checkpoint

    checkpoint = checkpoint or tiny_checkpoint(tmp_path / "tiny.safetensors")
    make_images(tmp_path / "images", count)
    project = AnnotationProject.create(tmp_path / "images", checkpoint=checkpoint)
    predictor = Predictor(load_checkpoint(checkpoint), "cpu")
    for rel in project.relpaths():
        project.set_prediction(rel, predictor.predict_one(load_image(project.image_path(rel))))
    project.save()
    return project


def tree_digest(folder: Path) -> dict[str, str]:
    """relative path → sha256 of every file under ``folder`` (to show that nothing was rewritten)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
