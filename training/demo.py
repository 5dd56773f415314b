"""``python -m training.demo``: regenerate the demo assets in ``resources/demo/`` end to end.

    python -m training.demo --out resources/demo --work runs/demo

1. Generates the synthetic part dataset (``training.synthetic``, seeded) into ``WORK/data``.
2. Trains on it with the real training command, printed before it runs::

       python -m training.run train --preset synthetic --data-root WORK/data --out WORK/run --seed 0 --epochs 30 ...

   The preset's frozen backbone (ViT-S/14 reg4, 4 blocks) and VGG-19 are random weights drawn from the seed, so
   nothing is downloaded. With an existing ``WORK/run`` the command gets ``--resume``: an interrupted regeneration
   continues, a finished run is only re-exported.
3. Writes ``OUT/demo.safetensors`` from the run's last checkpoint: the seeded backbone embedded, stored compactly
   (``--dtype``, int8 by default) and inference-only (no restoration network); part names left at their defaults.
4. Copies ``--images`` test images (never trained on), the categories taking turns, to ``OUT/images/`` (the
   generator's JPEG files, byte for byte) and their ground truth to ``OUT/ground_truth.json`` (the generator's COCO
   annotations, compressed RLE, for just those images).
5. Evaluates the shipped checkpoint: pixel NMI/ARI at 128×128 on the demo images (``demo_metrics``, the app's
   preprocessing) and on the run's whole test split (``training.evaluation``), written with the command, seed,
   timings and versions to ``OUT/metrics.json``.

Everything depends only on the seed: the same seed gives the same dataset and the same backbone (training on the CPU
is reproducible on one machine; other CPUs or a GPU may differ in the last digits).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from mpae_core.errors import MPAEError

logger = logging.getLogger("training.demo")

CHECKPOINT_NAME = "demo.safetensors"
GROUND_TRUTH_NAME = "ground_truth.json"
METRICS_NAME = "metrics.json"
IMAGES_DIR = "images"
STORAGE = {"int8": torch.int8, "float16": torch.float16, "float32": torch.float32}
MAP_SIZE = (128, 128)  # the reference evaluates every dataset on 128×128 maps (training.evaluation.MAP_SIZE)
RANDOM_WEIGHT_VARIABLES = ("MPAE_BACKBONE_WEIGHTS", "MPAE_VGG_WEIGHTS")


class DemoError(MPAEError):
    """A step of the demo regeneration failed."""


# ---------------------------------------------------------------------------------------------------- steps
def train_command(data_root: Path, run_dir: Path, *, seed: int, epochs: int | None, device: str,
                  max_steps: int | None = None, resume: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """The ``training.run`` arguments (after ``python -m training.run``) that train the demo model."""
    argv = ["train", "--preset", "synthetic", "--data-root", str(data_root), "--out", str(run_dir),
            "--seed", str(seed), "--device", device, "--quiet"]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    if max_steps is not None:
        argv += ["--max-steps", str(max_steps)]
    if resume:
        argv.append("--resume")
    return argv + list(extra)


@contextlib.contextmanager
def _random_weights_only() -> Iterator[None]:
    """Hide local backbone/VGG weight files: the demo's frozen networks must be the seeded random ones."""
    saved = {name: os.environ.pop(name) for name in RANDOM_WEIGHT_VARIABLES if name in os.environ}
    for name in saved:
        logger.warning("Ignoring %s while regenerating the demo (it uses seeded random weights)", name)
    try:
        yield
    finally:
        os.environ.update(saved)


def pick_demo_images(data_root: Path, count: int) -> list[dict[str, Any]]:
    """``count`` COCO image records of the test split, the categories taking turns (each in index order)."""
    coco = json.loads((data_root / "annotations" / "test" / "test.json").read_text(encoding="utf-8"))
    by_category: dict[str, list[dict[str, Any]]] = {}
    for image in sorted(coco["images"], key=lambda im: im["id"]):
        by_category.setdefault(image["category"], []).append(image)
    from .synthetic import CATEGORY_NAMES

    order = [name for name in CATEGORY_NAMES if name in by_category]
    picked: list[dict[str, Any]] = []
    while len(picked) < count and any(by_category[name] for name in order):
        for name in order:
            if by_category[name] and len(picked) < count:
                picked.append(by_category[name].pop(0))
    if len(picked) < count:
        raise DemoError(f"The test split of {data_root} has only {len(picked)} images, fewer than the {count} asked "
                        "for; generate more with --num-test.")
    return picked


def write_demo_images(data_root: Path, out: Path, count: int) -> list[str]:
    """Copy the picked test images to ``out/images`` and their annotations to ``out/ground_truth.json``."""
    coco = json.loads((data_root / "annotations" / "test" / "test.json").read_text(encoding="utf-8"))
    picked = pick_demo_images(data_root, count)
    images_dir = out / IMAGES_DIR
    shutil.rmtree(images_dir, ignore_errors=True)
    images_dir.mkdir(parents=True)
    records, annotations, names = [], [], []
    for image in picked:
        name = Path(image["file_name"]).stem + ".jpg"
        shutil.copyfile(data_root / "images" / "test" / image["file_name"], images_dir / name)
        records.append({**image, "file_name": name, "source": f"test/{image['file_name']}"})
        annotations += [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        names.append(name)
    meta = json.loads((data_root / "synthetic.json").read_text(encoding="utf-8"))
    ground_truth = {
        "info": {"description": "Ground-truth parts of the MPAE Annotator demo images (training.synthetic test split, "
                                "COCO / PartImageNet-Seg layout, compressed RLE); made by python -m training.demo",
                 "generator_version": meta["version"], "seed": meta["seed"]},
        "images": records, "annotations": annotations, "categories": coco["categories"],
    }
    (out / GROUND_TRUTH_NAME).write_text(json.dumps(ground_truth, separators=(",", ":")) + "\n", encoding="utf-8")
    logger.info("Wrote %d demo images to %s", len(names), images_dir)
    return names


def ground_truth_maps(demo_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """file name → [128, 128] ground-truth label map (part id, number of parts = background), as the evaluation
    builds it (``training.metrics.partimagenet_gt_mask``)."""
    from .metrics import partimagenet_gt_mask

    data = json.loads((Path(demo_dir) / GROUND_TRUTH_NAME).read_text(encoding="utf-8"))
    anns: dict[int, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        anns.setdefault(ann["image_id"], []).append(ann)
    num_categories = len(data["categories"])
    return {
        image["file_name"]: partimagenet_gt_mask(anns.get(image["id"], []), image["height"], image["width"],
                                                 num_categories, out_size=MAP_SIZE[0])
        for image in data["images"]
    }


def demo_metrics(model, demo_dir: str | os.PathLike, *, batch_size: int = 12, device: str = "cpu") -> dict[str, Any]:
    """Pixel NMI/ARI (in %) of ``model`` on the demo images against ``ground_truth.json``: the images go through the
    app's preprocessing (``mpae_core.inference``), the probabilities are taken at 128×128 and scored over every
    pixel, background included on both sides (``nmi``/``ari``), or with the argmax over the K parts (``fg_*``)."""
    from mpae_core.images import load_image
    from mpae_core.inference import Predictor

    from .metrics import ClusteringAccumulator

    demo_dir = Path(demo_dir)
    truth = ground_truth_maps(demo_dir)
    predictor = Predictor(model, device=device, cuda_graphs=False)
    k = model.cfg.num_parts
    everything, foreground = ClusteringAccumulator(), ClusteringAccumulator()
    names = sorted(truth)
    for start in range(0, len(names), batch_size):
        chunk = names[start : start + batch_size]
        batch = predictor.prepare([load_image(demo_dir / IMAGES_DIR / name) for name in chunk])
        probs = predictor.probs(batch, MAP_SIZE).float().cpu()
        gt = np.stack([truth[name] for name in chunk])
        everything.update(gt, probs.argmax(dim=1).numpy())
        foreground.update(gt, probs[:, :k].argmax(dim=1).numpy())
    return {"images": len(names), "nmi": everything.nmi(), "ari": everything.ari(),
            "fg_nmi": foreground.nmi(), "fg_ari": foreground.ari()}


def untrained_model(run_config: dict[str, Any]):
    """The run's model before its first step: the same seeded frozen backbone, freshly initialised MPAE weights
    (as ``training.trainer.Trainer`` draws them); the reference point for "better than chance"."""
    from mpae_core.backbone import resolve_backbone
    from mpae_core.model import MPAE

    from .presets import TrainConfig

    cfg = TrainConfig.from_dict(run_config)
    torch.manual_seed(cfg.seed)
    backbone = resolve_backbone(cfg.model.backbone, cfg.model.image_size, allow_random=True,
                                **cfg.model.backbone_kwargs)
    return MPAE(cfg.model, backbone).eval()


def backbone_digest(checkpoint: str | os.PathLike) -> str:
    """SHA-256 of the backbone tensors as stored in ``checkpoint`` (names, dtypes, shapes and bytes, in name order).

    Recorded in metrics.json when the assets are made, so a test can check the shipped weights byte for byte
    without re-drawing them: the seeded draw itself rounds differently on other CPUs (vectorised RNG maths).
    """
    import hashlib

    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(checkpoint), "pt") as f:
        for key in sorted(k for k in f.keys() if k.startswith("backbone.")):
            tensor = f.get_tensor(key).contiguous()
            digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import PIL
    import timm

    from importlib import metadata

    try:
        ours = metadata.version("mpae-annotator")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    return {"mpae_annotator": ours, "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
            "platform": platform.platform(), "processor": platform.machine()}


def _round(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------------------- the pipeline
def regenerate(out: Path, work: Path, **options: Any) -> dict[str, Any]:
    """Run every step (module docstring) and return what was written to ``metrics.json``; options as ``_regenerate``.

    Local backbone/VGG weight files named in the environment are hidden throughout: the demo's frozen networks are the
    seeded random ones, in training and in the untrained reference model alike.
    """
    with _random_weights_only():
        return _regenerate(out, work, **options)


def _regenerate(out: Path, work: Path, *, seed: int = 0, epochs: int | None = None, images: int = 36,
                num_train: int = 400, num_test: int = 100, max_steps: int | None = None, device: str = "cpu",
                dtype: str = "int8", train_extra: Sequence[str] = ()) -> dict[str, Any]:
    from mpae_core.checkpoint import load_checkpoint, save_checkpoint

    from . import run as training_run
    from .evaluation import EvalOptions, evaluate
    from .synthetic import GENERATOR_VERSION, generate_synthetic_dataset

    started = time.perf_counter()
    if images > num_test:
        raise DemoError(f"--images {images} is more than the {num_test} test images; raise --num-test.")
    data_root, run_dir = work / "data", work / "run"

    logger.info("Step 1/5: synthetic dataset (seed %d, %d train + %d test images) in %s", seed, num_train, num_test,
                data_root)
    generate_synthetic_dataset(data_root, num_train=num_train, num_test=num_test, seed=seed)

    resume = (run_dir / "checkpoints" / "last_state.pt").is_file()
    argv = train_command(data_root, run_dir, seed=seed, epochs=epochs, device=device, max_steps=max_steps,
                         resume=resume, extra=train_extra)
    command = "python -m training.run " + shlex.join(argv)
    logger.info("Step 2/5: training%s:\n    %s", " (continuing the run already there)" if resume else "", command)
    print(command, flush=True)
    train_started = time.perf_counter()
    code = training_run.main(argv)
    train_seconds = time.perf_counter() - train_started
    if code != 0:
        raise DemoError(f"Training failed (exit status {code}); see the messages above and the run folder {run_dir}.")
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))

    logger.info("Step 3/5: the demo checkpoint")
    trained = load_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    out.mkdir(parents=True, exist_ok=True)
    provenance = {"demo": True, "seed": seed, "command": command,
                  "trained_epochs": trained.info.provenance.get("epoch"),
                  "dataset": f"training.synthetic v{GENERATOR_VERSION}, seed {seed}, {num_train} train images"}
    checkpoint = save_checkpoint(trained, out / CHECKPOINT_NAME, embed_backbone=True, dtype=STORAGE[dtype],
                                 inference_only=True, provenance=provenance)
    shipped = load_checkpoint(checkpoint)  # the file as the app will read it, embedded backbone only
    logger.info("Wrote %s (%.1f MB)", checkpoint, checkpoint.stat().st_size / 1e6)

    logger.info("Step 4/5: demo images and their ground truth")
    names = write_demo_images(data_root, out, images)

    logger.info("Step 5/5: evaluation")
    options = EvalOptions(batch_size=16, num_workers=0, nme=False, progress=False)
    record = {
        "demo_images": _round(demo_metrics(shipped, out)),
        "demo_images_untrained": _round(demo_metrics(untrained_model(config), out)),
        "test_split": _round({"images": num_test, **evaluate(shipped, "synthetic", str(data_root), options)}),
        "test_split_float32_run_checkpoint": _round(
            {"images": num_test, **evaluate(trained, "synthetic", str(data_root), options)}),
        "metric_notes": "pixel NMI/ARI in % at 128x128, background included on both sides; fg_* take the argmax "
                        "over the K parts only (training.evaluation); demo_images use the app's preprocessing; "
                        "demo_images_untrained: the same seeded backbone with freshly initialised MPAE weights",
        "command": command,
        "regenerate": f"python -m training.demo --seed {seed} --epochs {config['epochs']} --images {images}",
        "seed": seed,
        "epochs": config["epochs"],
        "trained_epochs": trained.info.provenance.get("epoch"),
        "trained_steps": trained.info.provenance.get("global_step"),
        "model": {"backbone": config["model"]["backbone"], "backbone_kwargs": config["model"]["backbone_kwargs"],
                  "image_size": config["model"]["image_size"], "num_parts": config["model"]["num_parts"]},
        "dataset": {"generator_version": GENERATOR_VERSION, "seed": seed, "num_train": num_train,
                    "num_test": num_test, "demo_images": len(names)},
        "checkpoint": {"file": CHECKPOINT_NAME, "bytes": checkpoint.stat().st_size, "dtype": dtype,
                       "inference_only": True, "backbone_embedded": True,
                       "backbone_sha256": backbone_digest(checkpoint)},
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "training_resumed": resume,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
    }
    (out / METRICS_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("Demo images: NMI %.2f, ARI %.2f; test split: NMI %.2f, ARI %.2f; wrote %s",
                record["demo_images"]["nmi"], record["demo_images"]["ari"], record["test_split"]["nmi"],
                record["test_split"]["ari"], out / METRICS_NAME)
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Arguments after -- go to the training command unchanged (e.g. -- --workers 0).")
    parser.add_argument("--out", default="resources/demo", help="where the demo assets go (default: resources/demo)")
    parser.add_argument("--work", help="dataset and run folder (default: a temporary folder, removed at the end)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset, the random backbone and training")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the synthetic preset's 30)")
    parser.add_argument("--max-steps", type=int, help="stop training after this many steps (smoke tests)")
    parser.add_argument("--images", type=int, default=36, help="demo images to copy (default 36)")
    parser.add_argument("--num-train", type=int, default=400, help="synthetic training images (default 400)")
    parser.add_argument("--num-test", type=int, default=100, help="synthetic test images (default 100)")
    parser.add_argument("--device", default="cpu", help="training device (default cpu, reproducible; cuda is faster)")
    parser.add_argument("--dtype", choices=sorted(STORAGE), default="int8",
                        help="how the demo checkpoint stores its weights (default int8: about 12 MB)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="mpae-demo-"))
    try:
        regenerate(Path(args.out), work, seed=args.seed, epochs=args.epochs, images=args.images,
                   num_train=args.num_train, num_test=args.num_test, max_steps=args.max_steps, device=args.device,
                   dtype=args.dtype, train_extra=extra)
    except (MPAEError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
