#!/usr/bin/env python
"""How well the image confidence tells images apart: the old figure (mean max-probability) against the share of
clearly labelled pixels (``PartPrediction.confidence``, ``mpae_core.inference.clear_pixel_share``).

The image list sorts by this figure so that a person reviews the least sure images first; a figure that reads
~100 % on every image (MPAE's unscaled logits saturate the softmax) cannot do that. Prints min / median / max and
the interquartile range of both figures for the 36 demo images with the demo checkpoint (offline, embedded
backbone), and for random-weight models (seeded, asked for explicitly) on the demo images and on noise images.

    python benchmarks/confidence_spread.py [--markdown]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # the demo checkpoint embeds its backbone; random weights otherwise
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import _table  # noqa: E402  (benchmarks/_table.py, beside this script)

from mpae_core.backbone import resolve_backbone  # noqa: E402
from mpae_core.checkpoint import load_checkpoint  # noqa: E402
from mpae_core.config import MPAEConfig  # noqa: E402
from mpae_core.images import list_images, load_image  # noqa: E402
from mpae_core.inference import PartPrediction, Predictor  # noqa: E402
from mpae_core.model import MPAE  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo"
SUMMARY_SIZE = (128, 128)


def random_model(seed: int, num_parts: int = 8) -> MPAE:
    """A 2-block ViT-S/14 MPAE with random weights drawn from ``seed`` (as the tests' tiny models)."""
    torch.manual_seed(seed)
    cfg = MPAEConfig(backbone="vit_small_patch14_reg4_dinov2", backbone_kwargs={"depth": 2}, num_parts=num_parts,
                     group_size=2)
    return MPAE(cfg, resolve_backbone(cfg.backbone, cfg.image_size, allow_random=True, **cfg.backbone_kwargs))


def figures(predictions: list[PartPrediction]) -> dict[str, np.ndarray]:
    old = [float(p.confidence_map(SUMMARY_SIZE).mean()) for p in predictions]
    return {"mean max-probability (before)": np.asarray(old),
            "clear pixel share (now)": np.asarray([p.confidence for p in predictions])}


def rows_for(name: str, predictions: list[PartPrediction]) -> list[list[str]]:
    rows = []
    for figure, values in figures(predictions).items():
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        rows.append([name, figure, str(len(values)), f"{100 * values.min():.1f}", f"{100 * median:.1f}",
                     f"{100 * values.max():.1f}", f"{100 * (q3 - q1):.1f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    demo_images = [load_image(p) for p in list_images(DEMO / "images")]
    rng = np.random.default_rng(0)
    noise = [Image.fromarray((rng.random((96, 128, 3)) * 255).astype(np.uint8)) for _ in range(8)]
    rows = rows_for("demo model, demo images", Predictor(load_checkpoint(DEMO / "demo.safetensors"), device="cpu")
                    .predict(demo_images, batch_size=12))
    for seed in (0, 3):
        predictor = Predictor(random_model(seed), device="cpu")
        rows += rows_for(f"random weights (seed {seed}), demo images", predictor.predict(demo_images, batch_size=12))
        rows += rows_for(f"random weights (seed {seed}), noise images", predictor.predict(noise, batch_size=8))
    header = ["model, images", "figure", "n", "min %", "median %", "max %", "IQR %"]
    print(_table.format_table(header, rows, markdown=args.markdown, text_column=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
