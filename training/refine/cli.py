"""``python -m training.run refine``: the command line of refinement (the app runs it in a subprocess).

    python -m training.run refine --project photos/ --out runs/refine-1 [--checkpoint C] [--steps N] [--seconds S]

Writes ``RUN/config.json``, ``RUN/metrics.jsonl`` (the ``train`` command's record format, from the first step),
``RUN/refined.safetensors``, ``RUN/result.json``, and the same model as ``<project>/models/<name>.safetensors``.
Exit status: 0 done (also after a Stop, which saves what was learned), 1 bad input (one sentence on stderr,
nothing written), 130 cancelled (a second Stop; nothing written to the project's models folder).
"""
from __future__ import annotations

import argparse
import sys

from .. import stop
from .augment import MODES
from .loop import SCHEDULES, RefineConfig, Refiner
from .objective import DEFAULT_SUPERVISED_WEIGHT
from .session import open_session


def add_refine_parser(commands: argparse._SubParsersAction) -> None:
    defaults = RefineConfig()
    p = commands.add_parser(
        "refine", help="fine-tune the project's model on the images a person corrected (a new model in the "
                       "project's models folder)")
    p.add_argument("--project", required=True, help="the image folder, project folder or project.json")
    p.add_argument("--out", required=True, help="run folder: config.json, metrics.jsonl, result.json, the model")
    p.add_argument("--checkpoint", help="the model to refine (default: the project's checkpoint)")
    p.add_argument("--name", help="file name of the new model in the project's models folder "
                                  "(default refined-<date>-<time>; never overwrites)")
    p.add_argument("--steps", type=int, default=defaults.steps, help=f"optimiser steps (default {defaults.steps})")
    p.add_argument("--seconds", type=float, default=0.0,
                   help="time budget for the steps in seconds; stops early and saves when spent (default: none)")
    p.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off",
                   help="mixed precision on CUDA; the losses stay fp32")
    p.add_argument("--supervised-weight", type=float, default=DEFAULT_SUPERVISED_WEIGHT,
                   help=f"weight of the corrections' term next to the MPAE losses (default "
                        f"{DEFAULT_SUPERVISED_WEIGHT:g})")
    p.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam learning rate (default {defaults.lr:g})")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help=f"images per step (default {defaults.batch_size})")
    p.add_argument("--corrected-per-step", type=int, default=defaults.corrected_per_step,
                   help=f"corrected images in each batch (default {defaults.corrected_per_step})")
    p.add_argument("--no-flip", action="store_true", help="no mirrored views")
    p.add_argument("--augment", choices=MODES, default=defaults.augment,
                   help="random transforms of the corrected images in each step, so what they teach reaches images "
                        f"of other colours and poses (default {defaults.augment}; training/refine/augment.py)")
    p.add_argument("--unbalanced", action="store_true",
                   help="average the corrections' term over pixels (default: over labels, so small parts count)")
    p.add_argument("--average", type=float, default=defaults.average,
                   help="decay of the moving average of the weights that is saved (0: the last step's weights; "
                        f"default {defaults.average:g}; training/refine/averaging.py)")
    p.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule,
                   help=f"learning rate over the run (cosine: down to 0 at --steps or --seconds; default "
                        f"{defaults.schedule})")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--log-every", type=int, default=defaults.log_every, help="steps between metrics.jsonl lines")
    p.add_argument("--no-disk-cache", action="store_true",
                   help="keep backbone features in memory only (default: also <project>/cache/features)")
    p.add_argument("--reconstruction", action="store_true",
                   help="also train with the reconstruction term (needs a full checkpoint and VGG-19 weights)")
    p.add_argument("--vgg-weights", help="local VGG-19 weights for --reconstruction (else MPAE_VGG_WEIGHTS / cache)")
    p.add_argument("--backbone-weights", help="local backbone weights when the checkpoint does not embed them")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="random backbone (and VGG) when none are found (tests only)")
    p.set_defaults(run=command_refine)


def command_refine(args: argparse.Namespace) -> int:
    cfg = RefineConfig(steps=args.steps, seconds=args.seconds, batch_size=args.batch_size,
                       corrected_per_step=args.corrected_per_step, lr=args.lr,
                       supervised_weight=args.supervised_weight, flip=not args.no_flip, augment=args.augment,
                       average=args.average, schedule=args.schedule,
                       balanced=not args.unbalanced,
                       reconstruction=args.reconstruction, seed=args.seed, amp=args.amp, log_every=args.log_every,
                       disk_cache=not args.no_disk_cache)
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.corrected_per_step < 1 or cfg.log_every < 1:
        raise ValueError("--steps, --batch-size, --corrected-per-step and --log-every must be at least 1.")
    session = open_session(args.project, args.checkpoint, backbone_weights=args.backbone_weights,
                           allow_random_backbone=args.allow_random_weights)
    refiner = Refiner(session, args.out, cfg, device=args.device, name=args.name, vgg_weights=args.vgg_weights,
                      allow_random_vgg=args.allow_random_weights)
    previous = stop.install_handlers()
    try:
        result = refiner.run()
    except KeyboardInterrupt:
        print("Cancelled: no model was written to the project.", file=sys.stderr)
        return 130
    finally:
        stop.restore_handlers(previous)
    how = "stopped early at" if result.stopped_early else "after"
    print(f"Refined from {len(session.corrected)} corrected image(s), {how} {result.steps} steps in "
          f"{result.seconds:.0f} s (agreement with the corrections {result.agreement_before:.1f} % → "
          f"{result.agreement_after:.1f} %); new model: {result.checkpoint}")
    return 0
