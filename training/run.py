"""``python -m training.run``: train, evaluate and convert MPAE models from the terminal (or from the app).

    python -m training.run train --preset cub --data-root data/CUB --out runs/cub
    python -m training.run eval --checkpoint runs/cub/checkpoints/best.safetensors --dataset cub --data-root data/CUB
    python -m training.run convert model_best.pth model.safetensors --embed-backbone
    python -m training.run refine --project photos/ --out runs/refine-1

Under ``torchrun --nproc_per_node N -m training.run train ...`` training runs with DistributedDataParallel.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from mpae_core.errors import MPAEError

from . import stop
from .presets import TRAIN_PRESETS, TrainConfig, train_preset

logger = logging.getLogger("training.run")

SYNTHETIC_DEFAULT_SIZES = {"num_train": 400, "num_test": 100}


# ---------------------------------------------------------------------------------------------------- train
def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The preset, or the run folder's config.json when resuming, with the command line's overrides on top."""
    run_config = Path(args.out) / "config.json"
    if args.resume and run_config.is_file():
        base = TrainConfig.from_dict(json.loads(run_config.read_text()))
    else:
        base = train_preset(args.preset)
    overrides = {k: v for k, v in {
        "data_root": args.data_root, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "milestones": tuple(args.milestones) if args.milestones else None, "num_workers": args.workers,
        "seed": args.seed, "amp": args.amp, "max_steps": args.max_steps, "log_every": args.log_every,
        "eval_every": args.eval_every, "save_every": args.save_every, "backbone_weights": args.backbone_weights,
        "vgg_weights": args.vgg_weights,
    }.items() if v is not None}
    if args.no_augment:
        overrides["augment"] = False
    if args.allow_random_weights:
        overrides["allow_random_weights"] = True
    model_overrides = {k: v for k, v in {
        "num_parts": args.num_parts, "image_size": args.image_size, "group_size": args.group_size,
        "backbone": args.backbone, "mask_ratio": args.mask_ratio, "reconstruction_loss": args.reconstruction_loss,
        "semantic_loss": args.semantic_loss, "entropy_loss": args.entropy_loss,
    }.items() if v is not None}
    cfg = TrainConfig.from_dict({**base.to_dict(), **overrides, "model": base.model.replace(**model_overrides).to_dict()})
    if not cfg.data_root:
        raise MPAEError(f"--data-root is required for the {cfg.dataset} dataset; point it at the dataset folder.")
    return cfg


def _training_dataset(cfg: TrainConfig):
    from .data import AugmentConfig, build_dataset

    augment = AugmentConfig(enabled=cfg.augment)
    if cfg.dataset == "synthetic":
        ensure_synthetic(cfg.data_root)
        return build_dataset("partimagenet_seg", cfg.data_root, "train", cfg.model.image_size, train=True,
                             augment=augment)
    return build_dataset(cfg.dataset, cfg.data_root, "train", cfg.model.image_size, train=True, augment=augment)


def ensure_synthetic(root: str) -> None:
    """Generate the synthetic dataset into ``root`` unless it is already there."""
    from .synthetic import generate_synthetic_dataset

    if not (Path(root) / "synthetic.json").is_file():
        logger.info("Generating the synthetic dataset in %s", root)
        generate_synthetic_dataset(root, **SYNTHETIC_DEFAULT_SIZES)


def _command_train(args: argparse.Namespace) -> int:
    from .evaluation import EVAL_DATASETS, EvalOptions, evaluate
    from .trainer import Trainer

    cfg = _train_config(args)
    dataset = _training_dataset(cfg)
    evaluate_fn = None
    if cfg.dataset in EVAL_DATASETS:
        options = EvalOptions(batch_size=min(cfg.batch_size, 32), num_workers=min(cfg.num_workers, 4), nme=False,
                              progress=False)
        evaluate_fn = lambda model: evaluate(model, cfg.dataset, cfg.data_root, options)  # noqa: E731
    trainer = Trainer(cfg, dataset, args.out, device=args.device, evaluate=evaluate_fn, resume=args.resume,
                      show_progress=not args.quiet)
    previous = stop.install_handlers()  # Ctrl-C or a kill (the app's Stop button): checkpoint saved, resumable
    try:
        position = trainer.train()
    finally:
        stop.restore_handlers(previous)
    if trainer.is_main:
        print(f"Trained to epoch {position.epoch} (step {position.global_step}); checkpoints in "
              f"{trainer.paths.last.parent}")
    return 0


# ---------------------------------------------------------------------------------------------------- eval
def _command_eval(args: argparse.Namespace) -> int:
    from mpae_core.checkpoint import load_checkpoint

    from .evaluation import EvalOptions, evaluate

    model = load_checkpoint(args.checkpoint, backbone_weights=args.backbone_weights,
                            allow_random_backbone=args.allow_random_backbone, device=args.device)
    if args.dataset == "synthetic":
        ensure_synthetic(args.data_root)
    options = EvalOptions(batch_size=args.batch_size, num_workers=args.workers, nme=not args.skip_nme,
                          progress=not args.quiet)
    metrics = evaluate(model, args.dataset, args.data_root, options)
    print(f"{'metric':<8}{'value':>10}")
    for name, value in metrics.items():
        print(f"{name:<8}{value:>10.2f}")
    if args.out:
        record = {"checkpoint": str(args.checkpoint), "dataset": args.dataset, "data_root": str(args.data_root),
                  "k": model.cfg.num_parts, "image_size": model.cfg.image_size, **metrics}
        Path(args.out).write_text(json.dumps(record, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------------- convert
def _command_convert(args: argparse.Namespace) -> int:
    from mpae_core.checkpoint import load_checkpoint, save_checkpoint

    model = load_checkpoint(args.official, backbone_weights=args.backbone_weights,
                            allow_random_backbone=args.allow_random_backbone)
    path = save_checkpoint(model, args.output, embed_backbone=args.embed_backbone)
    print(f"Wrote {path} (K={model.cfg.num_parts}, {model.cfg.image_size} px, "
          f"backbone {'embedded' if args.embed_backbone else 'by name: ' + model.cfg.backbone})")
    return 0


# ---------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train MPAE with a benchmark preset or on a folder of images")
    train.add_argument("--preset", choices=sorted(TRAIN_PRESETS), default="folder",
                       help="fills in every hyperparameter of the reference recipe for that dataset (default: folder)")
    train.add_argument("--data-root", help="dataset folder (synthetic: generated there if empty)")
    train.add_argument("--out", required=True, help="run folder: config.json, metrics.jsonl, checkpoints/")
    train.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cpu, cuda, cuda:1, ...")
    train.add_argument("--amp", choices=("off", "bf16", "fp16"), help="mixed precision on CUDA; losses stay fp32")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint (optimizer and schedule included)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    group = train.add_argument_group("recipe overrides (default: the preset's)")
    group.add_argument("--epochs", type=int)
    group.add_argument("--batch-size", type=int, help="images per step and per process")
    group.add_argument("--lr", type=float, help="Adam learning rate (reference 5e-4)")
    group.add_argument("--milestones", type=int, nargs="+", help="epochs at which the lr is multiplied by 0.2")
    group.add_argument("--workers", type=int, help="data-loading processes")
    group.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (smoke tests)")
    group.add_argument("--log-every", type=int, help="steps between metrics.jsonl lines")
    group.add_argument("--eval-every", type=int, help="epochs between test evaluations (0 = never)")
    group.add_argument("--save-every", type=int, help="steps between mid-epoch checkpoints (0 = epoch ends)")
    group.add_argument("--no-augment", action="store_true", help="train on the plain squashed images")
    model = train.add_argument_group("model overrides")
    model.add_argument("--num-parts", type=int, help="K, the number of foreground parts")
    model.add_argument("--image-size", type=int, help="input size S (multiple of 14)")
    model.add_argument("--group-size", type=int, help="mini-group size G of the foreground presence loss")
    model.add_argument("--backbone", help="timm backbone name")
    model.add_argument("--mask-ratio", type=float, help="fraction of patches masked for restoration (0.9)")
    model.add_argument("--reconstruction-loss", choices=("reference", "paper"))
    model.add_argument("--semantic-loss", choices=("reference", "paper"))
    model.add_argument("--entropy-loss", choices=("reference", "paper"))
    weights = train.add_argument_group("weights")
    weights.add_argument("--backbone-weights", help="local DINOv2 weights file (else MPAE_BACKBONE_WEIGHTS / cache)")
    weights.add_argument("--vgg-weights", help="local VGG-19 weights file (else MPAE_VGG_WEIGHTS / cache)")
    weights.add_argument("--allow-random-weights", action="store_true",
                         help="random frozen backbone and VGG when none are found (tests, the synthetic demo)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_command_train)

    ev = commands.add_parser("eval", help="evaluate a checkpoint with the paper's protocol")
    ev.add_argument("--checkpoint", required=True, help="our .safetensors or the authors' .pth")
    ev.add_argument("--dataset", required=True,
                    choices=("cub", "celeba", "partimagenet_ood", "partimagenet_seg", "synthetic"))
    ev.add_argument("--data-root", required=True, help="dataset folder")
    ev.add_argument("--out", help="write the metrics as JSON here")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--workers", type=int, default=4)
    ev.add_argument("--skip-nme", action="store_true", help="skip the NME regression (it runs over the train split)")
    ev.add_argument("--backbone-weights", help="local DINOv2 weights file when the checkpoint does not embed them")
    ev.add_argument("--allow-random-backbone", action="store_true", help="random backbone if none is found (tests)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(run=_command_eval)

    conv = commands.add_parser("convert", help="convert the authors' .pth checkpoint into our .safetensors format")
    conv.add_argument("official", help="model_best.pth / final_state.pth from the authors' release")
    conv.add_argument("output", help="the .safetensors file to write")
    conv.add_argument("--embed-backbone", action="store_true", help="store the DINOv2 weights in the file too")
    conv.add_argument("--backbone-weights", help="local DINOv2 weights, if the .pth has no backbone1.* weights")
    conv.add_argument("--allow-random-backbone", action="store_true", help=argparse.SUPPRESS)
    conv.set_defaults(run=_command_convert)

    from .refine.cli import add_refine_parser

    add_refine_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("Stopped; resume with --resume.", file=sys.stderr)
        return 130
    except (MPAEError, ValueError, FileNotFoundError) as exc:  # a data-loading worker's error too (DataWorkerError)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback, then an exit (an uncaught one could hang)
        logger.exception("Unexpected error")
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
