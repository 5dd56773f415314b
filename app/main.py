"""``mpae-annotate``: the command-line entry point of MPAE Annotator.

This version offers ``info`` (what a checkpoint holds) and ``--version``; the desktop window and the headless
``batch`` command build on it. Nothing here imports Qt, so it runs on machines without a display.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import mpae_core
from mpae_core.errors import MPAEError


def _versions() -> str:
    import timm
    import torch

    from mpae_core.devices import resolve_device

    return (f"mpae-annotate {mpae_core.__version__} (torch {torch.__version__}, timm {timm.__version__}, "
            f"default device: {resolve_device('auto')})")


def _info(args: argparse.Namespace) -> int:
    from mpae_core.checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint, backbone_weights=args.backbone_weights,
                            allow_random_backbone=args.allow_random_backbone)
    cfg, info = model.cfg, model.info
    print(f"checkpoint:  {info.source} ({info.source_format})")
    print(f"backbone:    {cfg.backbone} at {cfg.image_size}x{cfg.image_size} px ({cfg.grid_size}x{cfg.grid_size} grid)")
    print(f"parts:       K={cfg.num_parts} (+ background), preset {cfg.preset}")
    for slot, (name, color) in enumerate(zip(info.part_names, info.part_colors)):
        print(f"  label {slot + 1:>3}  {name:<24} rgb{color}")
    if info.provenance:
        print(f"provenance:  {info.provenance}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpae-annotate", description="Unsupervised part annotation with MPAE.")
    parser.add_argument("--version", action="store_true", help="print versions and the default device, then exit")
    commands = parser.add_subparsers(dest="command")
    info = commands.add_parser("info", help="show what a checkpoint holds (ours or the authors' .pth)")
    info.add_argument("checkpoint", help="an MPAE .safetensors checkpoint or an authors' released .pth")
    info.add_argument("--backbone-weights", help="local DINOv2 weights file, if the checkpoint does not embed them")
    info.add_argument("--allow-random-backbone", action="store_true",
                      help="use a random backbone when no weights are found (for inspecting the file only)")
    info.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.version:
        print(_versions())
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except MPAEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
