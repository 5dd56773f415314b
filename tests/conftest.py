"""Shared test helpers: the reference fixtures, the authors' checkpoint layout with random weights, tiny models."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never download anything

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def fixture_path(name: str) -> Path:
    """A file of ../shared/fixtures, or a skip that says why (never a silent pass)."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"reference fixture {path} is not present (the shared/ folder beside the project is missing)")
    return path


def official_state_dict(variant: str, seed: int | None = 0) -> dict[str, torch.Tensor]:
    """A state_dict in the authors' released layout; random as in the fixtures README, or zeros when seed is None."""
    manifest = json.loads(fixture_path("official_manifest.json").read_text())[variant]
    rng = np.random.default_rng(seed) if seed is not None else None
    state = {}
    for name, shape, _dtype in manifest["keys"]:
        if rng is None:
            state[name] = torch.zeros(shape)
            continue
        a = rng.standard_normal(size=shape, dtype=np.float32) * np.float32(0.02)
        if len(shape) == 1 and name.endswith(".weight"):
            a = a + np.float32(1.0)
        state[name] = torch.from_numpy(a)
    return state


@pytest.fixture(scope="session")
def official_celeba_path(tmp_path_factory) -> Path:
    """The celeba_k16 random-weight checkpoint of the inference fixture (seed 0), saved like the authors' files."""
    path = tmp_path_factory.mktemp("official") / "model_best.pth"
    torch.save(official_state_dict("celeba_k16", seed=0), path)
    return path


@pytest.fixture(scope="session")
def official_celeba_model(official_celeba_path):
    from mpae_core.checkpoint import load_checkpoint

    return load_checkpoint(official_celeba_path)


TINY_BACKBONE = dict(backbone="vit_small_patch14_reg4_dinov2", backbone_kwargs={"depth": 2})


def tiny_config(**overrides):
    """A fast model for CPU tests: 2-block ViT-S/14 backbone, 4 parts, groups of 2."""
    from mpae_core.config import MPAEConfig

    values = dict(TINY_BACKBONE, num_parts=4, group_size=2)
    values.update(overrides)
    return MPAEConfig(**values)


def tiny_model(seed: int = 0, **overrides):
    from mpae_core.backbone import resolve_backbone
    from mpae_core.model import MPAE

    torch.manual_seed(seed)
    cfg = tiny_config(**overrides)
    backbone = resolve_backbone(cfg.backbone, cfg.image_size, allow_random=True, **cfg.backbone_kwargs)
    return MPAE(cfg, backbone)


def make_predicted_project(folder: Path, num_images: int = 6, num_parts: int = 4, size: tuple[int, int] = (96, 128)):
    """A project over ``num_images`` generated photos, each with a fake prediction whose parts are blobs.

    No model runs: logits at 8×8 are built so part k sits in its own quadrant-ish region (image i drops part
    i % K), which gives the app's views (overlay, counts, gallery) something meaningful to show in milliseconds.
    """
    from PIL import Image

    from mpae_core.annotation import AnnotationProject
    from mpae_core.inference import PartPrediction

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    height, width = size
    for i in range(num_images):
        pixels = (rng.random((height, width, 3)) * 60 + 40 * (i % 4)).astype(np.uint8)
        pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = (200, 120 + 10 * i, 60)
        Image.fromarray(pixels).save(folder / f"img_{i:02d}.png")
    project = AnnotationProject.create(folder)
    centres = [(2 + 4 * (k // 2) % 8, 2 + 4 * (k % 2)) for k in range(num_parts)]
    yy, xx = np.mgrid[0:8, 0:8]
    for i, relpath in enumerate(project.relpaths()):
        logits = np.full((num_parts + 1, 8, 8), 0.0, dtype=np.float32)
        for k, (cy, cx) in enumerate(centres):
            if k == i % num_parts and num_images > 1:
                logits[k] = -9.0
                continue
            logits[k] = 6.0 - ((yy - cy) ** 2 + (xx - cx) ** 2)
        logits[num_parts] = 1.0  # background wherever no part is strong
        project.set_prediction(relpath, PartPrediction.from_logits(torch.from_numpy(logits), size))
    project.save()
    return project


@pytest.fixture
def private_settings(tmp_path, monkeypatch):
    """The app's settings and data folders in tmp_path (app test modules use it for every test via pytestmark)."""
    monkeypatch.setenv("MPAE_ANNOTATOR_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MPAE_ANNOTATOR_DATA_DIR", str(tmp_path / "data"))


def show_main_window(qtbot, size: tuple[int, int] = (1280, 800), save_settings: bool = False,
                     wait_exposed: bool = True, **settings):
    """A MainWindow with ``AppSettings(**settings)``, registered with qtbot, resized and shown."""
    from app.settings import AppSettings
    from app.window import MainWindow

    win = MainWindow(AppSettings(**settings), save_settings=save_settings)
    qtbot.addWidget(win)
    win.resize(*size)
    win.show()
    if wait_exposed:
        qtbot.waitExposed(win)
    return win


@pytest.fixture
def predicted_project(tmp_path):
    """An AnnotationProject (K=4, six 128×96 images, all predicted) in a temp folder."""
    return make_predicted_project(tmp_path / "images")
