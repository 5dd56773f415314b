#!/usr/bin/env python
"""How far can refinement go with the start model's frozen backbone? A linear probe on its tokens (issue 12).

Refinement trains the compress conv and the PartFormer; every logit is then ``descriptor · compress(token)``, linear
in the frozen backbone's tokens. So a linear classifier fitted on the tokens of *fully* labelled images, with the
benchmark's own naming (``bench_refine.choose_naming``), bounds what corrections can teach a model with this backbone
(up to the per-image freedom of the descriptors). It is fitted on the tokens of k train images for several k and
scored on the held-out test images like ``bench_refine.py``: per-label IoU at the image resolution, the probe's
logits upsampled bilinearly as the model's are.

    python benchmarks/refine_ceiling.py --data-root /tmp/synth [--k 3 10 100 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import _table  # noqa: E402
from bench_refine import NAMING_IMAGES, choose_naming, file_names, predict_folder, slot_labels  # noqa: E402
from mpae_core.annotation import AnnotationProject  # noqa: E402
from mpae_core.checkpoint import load_checkpoint  # noqa: E402
from mpae_core.images import load_image  # noqa: E402
from mpae_core.inference import Predictor, preprocess  # noqa: E402
from training.synthetic import PART_NAMES, generate_synthetic_dataset, load_label_map  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo" / "demo.safetensors"


def tokens_and_labels(model, root: Path, split: str, names: list[str], lut: np.ndarray):
    """Per image: tokens [h·w, C], the label at each token (nearest), and the full-resolution ground truth."""
    out = []
    for name in names:
        image = load_image(root / "images" / split / name)
        with torch.no_grad():
            tokens = model.backbone(preprocess(image, model.cfg.image_size)[None])[0]
        c, h, w = tokens.shape
        gt = lut[load_label_map(root, split, name)]
        small = np.asarray(Image.fromarray(gt.astype(np.uint8)).resize((w, h), Image.NEAREST))
        out.append((tokens.reshape(c, -1).T.numpy(), small.ravel(), gt, (h, w)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="synthetic dataset (generated there when missing)")
    parser.add_argument("--checkpoint", default=str(DEMO))
    parser.add_argument("--k", type=int, nargs="+", default=[3, 10, 100, 200], help="fully labelled train images")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="refine_ceiling_")
    root = Path(args.data_root or Path(tmp.name) / "data")
    if not (root / "synthetic.json").is_file():
        generate_synthetic_dataset(root, num_train=max(args.k), num_test=100, seed=0)
    model = load_checkpoint(args.checkpoint)
    train = file_names(root, "train")
    base = Path(tmp.name) / "naming"
    base.mkdir()
    for name in train[:NAMING_IMAGES]:
        (base / name).write_bytes((root / "images" / "train" / name).read_bytes())
    project = AnnotationProject.create(base)
    predict_folder(project, Predictor(model, "cpu"))
    naming = choose_naming(project, root, train[:NAMING_IMAGES], "slot-per-type")
    project.close()
    labels_of = slot_labels(naming)
    classes = list(labels_of)  # probe class i + 1 = the i-th named slot, 0 = background and unnamed types
    lut = np.zeros(256, dtype=np.int64)
    for i, s in enumerate(classes):
        lut[labels_of[s]] = i + 1
    train_data = tokens_and_labels(model, root, "train", train[: max(args.k)], lut)
    test_data = tokens_and_labels(model, root, "test", file_names(root, "test"), lut)
    rows = []
    for k in args.k:
        x = np.concatenate([t for t, *_ in train_data[:k]])
        y = np.concatenate([labels for _, labels, *_ in train_data[:k]])
        mean, std = x.mean(0), x.std(0) + 1e-6
        probe = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced").fit((x - mean) / std, y)
        inter, union = np.zeros(len(classes)), np.zeros(len(classes))
        for tokens, _, gt, (h, w) in test_data:
            scores = probe.decision_function((tokens - mean) / std).T.reshape(-1, h, w)
            up = F.interpolate(torch.from_numpy(scores)[None].float(), size=gt.shape, mode="bilinear",
                               align_corners=False)[0]
            said = probe.classes_[up.argmax(0).numpy()]
            for i in range(len(classes)):
                inter[i] += np.count_nonzero((gt == i + 1) & (said == i + 1))
                union[i] += np.count_nonzero((gt == i + 1) | (said == i + 1))
        iou = 100 * inter / np.maximum(union, 1)
        rows.append([str(k), f"{iou.mean():.1f}", *(f"{v:.1f}" for v in iou)])
    header = ["fully labelled images", "fg mIoU", *(PART_NAMES[labels_of[s][0]] for s in classes)]
    print(f"Linear probe on the frozen backbone tokens of {args.checkpoint} (naming as bench_refine.py: "
          + "; ".join(f"'{PART_NAMES[t[0]]}' = {' + '.join(PART_NAMES[i] for i in t)}" for t in labels_of.values())
          + ")\n")
    print(_table.format_table(header, rows, markdown=args.markdown, text_column=0))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
