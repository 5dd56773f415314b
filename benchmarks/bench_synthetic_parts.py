#!/usr/bin/env python
"""MPAE vs. the paper's clustering baseline on the synthetic part set, on the CPU, with RANDOM weights only.

1. Generates the synthetic dataset (``training.synthetic``) into a temp folder, or reuses ``--data-root``.
2. Trains MPAE with the ``synthetic`` preset (seeded random frozen ViT-S/14 backbone and VGG-19) in-process with
   ``training.trainer.Trainer`` for a fixed budget (``--minutes`` or ``--steps``); progress goes to stderr.
3. Evaluates the LAST model with ``training.evaluation.evaluate(model, "synthetic", ...)``: pixel NMI/ARI at 128×128
   over every test pixel, background included (reference §4.3); ``fg_*`` take the argmax over the K parts only.
4. Baseline: k-means on the patch features of the SAME frozen backbone (``trainer.model.backbone``), fitted on the
   train images' patches (test transform), predicted per test image, scored against the same ground truth
   (``partimagenet_gt_mask``) with the same accumulator. The paper clusters foreground features, but an
   unsupervised baseline has no foreground mask at test time, so the main baseline is k-means with K+1 clusters on
   ALL patches: as many labels as MPAE's Q = K+1 slots that ``nmi``/``ari`` score (K clusters, the counterpart of
   ``fg_*``, is shown too). Like MPAE's logits D·F (reference §3), the nearest-centroid scores 2c·f − |c|² are
   bilinearly upsampled to 128×128 before the argmax (``--upsample nearest``: the label grid instead).
   For scale, "centre disc" labels a fixed disc (radius 0.5 of the half-side) as object in every test image: no
   learning, no image content; ~84 % of the test pixels are background, which ARI rewards heavily.

    python benchmarks/bench_synthetic_parts.py --minutes 10 --markdown
    python benchmarks/bench_synthetic_parts.py --steps 2 --num-train 32 --num-test 8   # a quick smoke run
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # random weights only: nothing is ever downloaded
for _var in ("MPAE_BACKBONE_WEIGHTS", "MPAE_VGG_WEIGHTS"):
    os.environ.pop(_var, None)  # the resolvers would otherwise load those files instead of random weights
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import _table  # noqa: E402  (benchmarks/_table.py, beside this script)

from training.data import AugmentConfig, build_dataset, collate  # noqa: E402
from training.evaluation import MAP_SIZE, EvalOptions, evaluate  # noqa: E402
from training.metrics import ClusteringAccumulator, partimagenet_gt_mask  # noqa: E402
from training.presets import train_preset  # noqa: E402
from training.synthetic import generate_synthetic_dataset  # noqa: E402
from training.trainer import Trainer  # noqa: E402

logger = logging.getLogger("bench_synthetic_parts")
METRICS = ("nmi", "ari", "fg_nmi", "fg_ari")
_load = lambda: getattr(os, "getloadavg", lambda: (float("nan"),))()[0]  # noqa: E731  (not on Windows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", help="existing synthetic dataset folder to reuse (default: generate one in a "
                                       "temp folder, or in --out/data when --out is given)")
    p.add_argument("--num-train", type=int, default=400, help="train images to generate (default 400)")
    p.add_argument("--num-test", type=int, default=100, help="test images to generate (default 100)")
    p.add_argument("--out", help="folder for the run (run/ with config.json, metrics.jsonl, checkpoints) and "
                                 "results.json (default: a temp folder, deleted at the end)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=10.0,
                        help="training budget in wall-clock minutes (default 10; the model build is not counted; "
                             "the preset's 30 epochs end the run earlier on a fast CPU)")
    budget.add_argument("--steps", type=int, help="train exactly this many optimiser steps instead of --minutes")
    p.add_argument("--batch-size", type=int, help="images per step (preset: 32)")
    p.add_argument("--lr", type=float, help="Adam learning rate (preset: 5e-4)")
    p.add_argument("--epochs", type=int, help="epochs of the LR schedule (preset: 30, milestones 20/25; a budget "
                                              "that ends first simply stops early)")
    p.add_argument("--milestones", type=int, nargs="+", help="epochs at which the LR is multiplied by 0.2")
    p.add_argument("--num-parts", type=int, help="K, MPAE's foreground parts and the k-means K (preset: 8)")
    p.add_argument("--image-size", type=int, help="input size S, a multiple of 14 (preset: 112)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override any MPAEConfig field, repeatable, e.g. --set restoration_output_patch=4 (a 4× "
                        'cheaper VGG loss) or --set \'backbone_kwargs={"depth": 4, "init_values": 1e-5}\' (DINOv2\'s '
                        "LayerScale, which leaves random blocks near-identities; the preset uses 1.0)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="also evaluate on the test split every N epochs and log it to metrics.jsonl (a learning "
                        "curve; the table always reports the LAST model, no selection on test). Default 0: never")
    p.add_argument("--no-augment", action="store_true", help="train on plain squashed images (no flip/affine)")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes for training (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, masks and data order (default 0)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated dataset (default 0)")
    p.add_argument("--kmeans-init", type=int, default=4, help="k-means restarts (n_init, default 4)")
    p.add_argument("--upsample", choices=("bilinear", "nearest"), default="bilinear",
                   help="k-means maps to 128×128: bilinear scores (as MPAE's logits) or nearest labels")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (for closing notes)")
    return p.parse_args(argv)


def training_config(args: argparse.Namespace, root: str):
    cfg = train_preset("synthetic", data_root=root, seed=args.seed, num_workers=args.workers,
                       eval_every=args.eval_every, save_every=0, log_every=5, augment=not args.no_augment)
    model = {k: v for k, v in {"num_parts": args.num_parts, "image_size": args.image_size}.items() if v is not None}
    for item in args.set:
        field, _, value = item.partition("=")
        model[field.strip()] = json.loads(value)
    run = {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs,
                             "milestones": tuple(args.milestones) if args.milestones else None}.items()
           if v is not None}
    cfg = dataclasses.replace(cfg, model=cfg.model.replace(**model), **run)
    if args.steps:
        steps_per_epoch = math.ceil(args.num_train_actual / cfg.batch_size)
        cfg.max_steps = args.steps
        cfg.epochs = max(cfg.epochs, math.ceil(args.steps / steps_per_epoch))
    return cfg


def train_mpae(args: argparse.Namespace, root: str, run_dir: Path) -> tuple[Trainer, float, int]:
    cfg = training_config(args, root)
    dataset = build_dataset("partimagenet_seg", root, "train", cfg.model.image_size, train=True,
                            augment=AugmentConfig(enabled=cfg.augment))
    options = EvalOptions(batch_size=32, num_workers=0, nme=False, progress=False)
    curve = (lambda model: evaluate(model, "synthetic", root, options)) if args.eval_every else None
    trainer = Trainer(cfg, dataset, run_dir, device="cpu", evaluate=curve, show_progress=True)  # tqdm: stderr
    if not args.steps:  # wall-clock budget: the trainer's own stop test, ended by a deadline too
        deadline, spent = time.perf_counter() + 60.0 * args.minutes, trainer._step_budget_spent
        trainer._step_budget_spent = lambda: time.perf_counter() >= deadline or spent()
    start = time.perf_counter()
    position = trainer.train()
    return trainer, time.perf_counter() - start, position.global_step


@torch.inference_mode()
def patch_features(backbone, dataset, batch_size: int = 32):
    """[N, D, h, w] final-norm patch tokens of every image, and the stacked 128×128 GT masks if present."""
    feats, masks = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate):
        feats.append(backbone(batch["image"]).float())
        if "gt_mask" in batch:
            masks.append(batch["gt_mask"])
    return torch.cat(feats), (torch.cat(masks) if masks else None)


def kmeans_baseline(backbone, root: str, image_size: int, clusters: list[int], args) -> dict:
    """k-means fitted on train patch features, scored on test pixels: {k: metrics (%), seconds}, and the disc."""
    start = time.perf_counter()
    train = build_dataset("partimagenet_seg", root, "train", image_size, train=False)
    train_feats, _ = patch_features(backbone, train)
    test = build_dataset("partimagenet_seg", root, "test", image_size, train=False)  # GT as evaluate_pixels's
    test.gt_mask_fn = functools.partial(partimagenet_gt_mask, num_categories=len(test.categories), out_size=MAP_SIZE)
    test_feats, gt = patch_features(backbone, test)
    feature_seconds = time.perf_counter() - start
    x = train_feats.permute(0, 2, 3, 1).reshape(-1, train_feats.shape[1]).numpy()
    results = {}
    for k in clusters:
        t0 = time.perf_counter()
        km = KMeans(n_clusters=k, n_init=args.kmeans_init, random_state=args.seed).fit(x)
        centres = torch.from_numpy(km.cluster_centers_).float()  # [k, D]
        scores = 2 * torch.einsum("kd,ndhw->nkhw", centres, test_feats) - (centres ** 2).sum(1)[None, :, None, None]
        if args.upsample == "bilinear":
            pred = F.interpolate(scores, size=MAP_SIZE, mode="bilinear", align_corners=False).argmax(1)
        else:
            pred = F.interpolate(scores.argmax(1, keepdim=True).float(), size=MAP_SIZE, mode="nearest")[:, 0].long()
        acc = ClusteringAccumulator()
        acc.update(gt, pred)
        results[k] = {"nmi": acc.nmi(), "ari": acc.ari(), "seconds": feature_seconds + time.perf_counter() - t0}
    ys, xs = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in MAP_SIZE), indexing="ij")
    acc = ClusteringAccumulator()
    acc.update(gt, (ys ** 2 + xs ** 2 < 0.25).long().expand_as(gt))
    results["disc"] = {"nmi": acc.nmi(), "ari": acc.ari(), "seconds": None}
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="bench_synthetic_parts_")
    out = Path(args.out or tmp.name)
    root = args.data_root or str(out / "data")
    if not (Path(root) / "synthetic.json").is_file():
        t0 = time.perf_counter()
        generate_synthetic_dataset(root, num_train=args.num_train, num_test=args.num_test, seed=args.data_seed)
        logger.info("generated %d + %d images in %.1f s", args.num_train, args.num_test, time.perf_counter() - t0)
    args.num_train_actual = json.loads((Path(root) / "synthetic.json").read_text())["num_train"]

    load = [_load()]
    trainer, train_seconds, steps = train_mpae(args, root, out / "run")
    load.append(_load())
    model, k = trainer.model, trainer.cfg.model.num_parts
    mpae = evaluate(model, "synthetic", root, EvalOptions(batch_size=32, num_workers=0, nme=False, progress=False))
    baseline = kmeans_baseline(model.backbone, root, trainer.cfg.model.image_size, [k + 1, k], args)

    rows = [[f"MPAE (K={k}, {steps} steps)", *(f"{mpae[m]:.2f}" for m in METRICS), f"{train_seconds:.1f} s"]]
    for name, r in ((f"k-means {k + 1} clusters (K+1)", baseline[k + 1]), (f"k-means {k} clusters (K)", baseline[k]),
                    ("centre disc (no learning)", baseline["disc"])):
        rows.append([name, f"{r['nmi']:.2f}", f"{r['ari']:.2f}", "-", "-",
                     "-" if r["seconds"] is None else f"{r['seconds']:.1f} s"])
    print(f"\nsynthetic set {root}: {args.num_train_actual} train images, S={trainer.cfg.model.image_size}, "
          f"batch {trainer.cfg.batch_size}, lr {trainer.cfg.lr:g}, backbone {trainer.cfg.model.backbone} "
          f"{json.dumps(trainer.cfg.model.backbone_kwargs)} (random), k-means upsampling {args.upsample}; "
          f"torch threads {torch.get_num_threads()}, load average before/after training {load[0]:.2f}/{load[1]:.2f}\n")
    print(_table.format_table(("method", "NMI", "ARI", "fg NMI", "fg ARI", "train time"), rows,
                              markdown=args.markdown, text_column=0))
    main_baseline = baseline[k + 1]
    wins = mpae["nmi"] > main_baseline["nmi"] and mpae["ari"] > main_baseline["ari"]
    print(f"\nMPAE beats k-means with K+1={k + 1} clusters on both NMI and ARI: {'YES' if wins else 'NO'} "
          f"(NMI {mpae['nmi']:.2f} vs {main_baseline['nmi']:.2f}, ARI {mpae['ari']:.2f} vs {main_baseline['ari']:.2f})")
    if args.out:
        record = {"mpae": {**mpae, "train_seconds": train_seconds, "steps": steps},
                  "kmeans": {str(c): r for c, r in baseline.items()}, "mpae_beats_kmeans": wins,
                  "config": trainer.cfg.to_dict()}
        (out / "results.json").write_text(json.dumps(record, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
