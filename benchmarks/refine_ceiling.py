#!/usr/bin/env python
"""How far can refinement go with the start model's frozen backbone? Probes on its tokens (issue 12).

Refinement trains the compress conv and the PartFormer; every logit is then ``descriptor · compress(token)``: the
compress conv is a 1×1 convolution without bias, norm or activation, and the bilinear upsampling is linear too, so
on one image the labels are the argmax of a *linear* function of the frozen backbone's tokens. The descriptors,
though, are computed by the PartFormer from that image's pixels, so the linear function may change from image to
image. Rows, all with the benchmark's own naming (``bench_refine.choose_naming``) and scored on the held-out test
images like ``bench_refine.py`` (per-label IoU at the image resolution, logits upsampled bilinearly as the model's):

* ``k shared``: one linear classifier fitted on the tokens of k *fully* labelled train images: the bound for a model
  whose descriptors do not depend on the image (the demo model's nearly do not: the ``start model`` rows);
* ``per-image probe``: a linear classifier fitted on each test image's own tokens and labels: what per-image
  descriptors could reach at best with these tokens (an upper bound, not a prediction);
* ``grid ceiling``: each test image's true label fractions per feature-grid cell upsampled as logits: what the
  feature grid's resolution allows at all.

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


def label_ious(pairs, num_classes: int) -> np.ndarray:
    """Per-class IoU (classes 1..num_classes) pooled over (predicted, truth) label-map pairs."""
    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    for said, gt in pairs:
        for i in range(num_classes):
            inter[i] += np.count_nonzero((gt == i + 1) & (said == i + 1))
            union[i] += np.count_nonzero((gt == i + 1) | (said == i + 1))
    return 100 * inter / np.maximum(union, 1)


def upsampled_argmax(scores: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """[C, h, w] scores → [H, W] argmax of their bilinear upsampling, as the model's label maps are made."""
    scores = torch.as_tensor(scores, dtype=torch.float32)[None]
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)[0].argmax(0).numpy()


def oracle_scores(model, root: Path, test_data, classes: list[int]) -> dict[str, np.ndarray]:
    """fg IoUs of the per-image oracles and of the start model with its own and with its mean descriptors."""
    per_image, grid = [], []
    for tokens, labels, gt, (h, w) in test_data:
        onehot = torch.from_numpy(np.eye(len(classes) + 1, dtype=np.float32)[gt]).permute(2, 0, 1)[None]
        grid.append((upsampled_argmax(F.adaptive_avg_pool2d(onehot, (h, w))[0], gt.shape), gt))
        present = np.unique(labels)
        if len(present) == 1:
            per_image.append((np.full(gt.shape, present[0]), gt))
            continue
        probe = LogisticRegression(C=100, max_iter=3000).fit(tokens, labels)
        scores = probe.decision_function(tokens)
        scores = np.stack([-scores, scores], 1) if scores.ndim == 1 else scores
        per_image.append((probe.classes_[upsampled_argmax(scores.T.reshape(-1, h, w), gt.shape)], gt))
    slot_class = np.zeros(model.cfg.num_slots, dtype=np.int64)  # model channel → probe class (0: other)
    for i, s in enumerate(classes):
        slot_class[s] = i + 1
    images = torch.stack([preprocess(load_image(root / "images" / "test" / name), model.cfg.image_size)
                          for name in file_names(root, "test")])
    with torch.no_grad():
        features, descriptors = model.features(images), model.partformer(images).float()
    rows = {}
    for name, used in (("start model", descriptors),
                       ("start model, mean descriptors", descriptors.mean(0, keepdim=True).expand_as(descriptors))):
        logits = model.match(used, features)
        rows[name] = label_ious([(slot_class[upsampled_argmax(lg, gt.shape)], gt)
                                 for lg, (*_, gt, _) in zip(logits, test_data)], len(classes))
    rows["per-image probe (own labels)"] = label_ious(per_image, len(classes))
    rows["grid ceiling (true fractions)"] = label_ious(grid, len(classes))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="synthetic dataset (generated there when missing)")
    parser.add_argument("--checkpoint", default=str(DEMO))
    parser.add_argument("--k", type=int, nargs="+", default=[3, 10, 100, 200], help="fully labelled train images")
    parser.add_argument("--no-oracles", action="store_true", help="only the shared probes")
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
        iou = label_ious([(probe.classes_[upsampled_argmax(probe.decision_function((tokens - mean) / std).T
                                                            .reshape(-1, h, w), gt.shape)], gt)
                          for tokens, _, gt, (h, w) in test_data], len(classes))
        rows.append([f"{k} shared", f"{iou.mean():.1f}", *(f"{v:.1f}" for v in iou)])
    if not args.no_oracles:
        for name, scores in oracle_scores(model, root, test_data, classes).items():
            rows.append([name, f"{scores.mean():.1f}", *(f"{v:.1f}" for v in scores)])
    header = ["probe (fully labelled train images)", "fg mIoU", *(PART_NAMES[labels_of[s][0]] for s in classes)]
    print(f"Probes on the frozen backbone tokens of {args.checkpoint} (naming as bench_refine.py: "
          + "; ".join(f"'{PART_NAMES[t[0]]}' = {' + '.join(PART_NAMES[i] for i in t)}" for t in labels_of.values())
          + ")\n")
    print(_table.format_table(header, rows, markdown=args.markdown, text_column=0))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
