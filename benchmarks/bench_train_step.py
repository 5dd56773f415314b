#!/usr/bin/env python
"""Seconds per MPAE training step, images/s and peak memory, with RANDOM weights (nothing is downloaded).

Times the full step as training/trainer.py runs it (``training_losses`` under the optional autocast, finiteness
check, backward, clip 2.0, Adam), then each part alone on inputs of the real shapes and dtypes (from one real
forward): backbone forward (no_grad); PartFormer fwd+bwd; restoration fwd+bwd given fill tokens that require grad;
VGG perceptual (``reconstruction_loss``: VGG on target and restored image, bwd into the latter); constraint losses
fwd+bwd; optimizer (clip + Adam). The parts leave out the glue (compress conv, D·F, fill einsum, target resize).

    python benchmarks/bench_train_step.py --device cuda --amp bf16 --markdown
    python benchmarks/bench_train_step.py --device cpu --batch 2 1 --repeats 2 --warmup 1
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import re
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # random weights never need the hub
for _var in ("MPAE_BACKBONE_WEIGHTS", "MPAE_VGG_WEIGHTS"):  # the resolvers would otherwise load those files
    os.environ.pop(_var, None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import timm  # noqa: E402
import torch  # noqa: E402

import _table  # noqa: E402  (benchmarks/_table.py, beside this script)

from mpae_core.backbone import resolve_backbone  # noqa: E402
from mpae_core.config import DEFAULT_BACKBONE, MPAEConfig  # noqa: E402
from mpae_core.devices import resolve_device  # noqa: E402
from mpae_core.losses import constraint_losses, reconstruction_loss, weighted_total  # noqa: E402
from mpae_core.model import MPAE, restoration_target  # noqa: E402
from mpae_core.perceptual import resolve_perceptual_network  # noqa: E402

LR, CLIP = 5e-4, 2.0  # the reference's Adam learning rate and gradient clipping
AMP = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COLUMNS = ("size", "batch", "what", "ms", "% of step", "images/s", "peak MiB")
_load = lambda: getattr(os, "getloadavg", lambda: (float("nan"),))()[0]  # noqa: E731  (not on Windows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: CUDA if present, else CPU")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 448], metavar="S",
                   help="input sizes S (multiples of the patch size 14); one model per size (default: 224 448)")
    p.add_argument("--batch", type=int, nargs="+", metavar="B",
                   help="batch size, one for every size or one per size (default: 8 on the CPU, 64 on CUDA)")
    p.add_argument("--amp", default="off", choices=tuple(AMP), help="autocast on CUDA as `training.run train --amp` "
                   "(losses stay fp32; fp16 adds the GradScaler); ignored on the CPU, like the trainer (default: off)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"timm ViT, random weights (default: {DEFAULT_BACKBONE})")
    p.add_argument("--num-parts", type=int, default=16, metavar="K", help="foreground parts K (default: 16)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of every case; the median is reported (default: 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs of every case first (default: 2)")
    p.add_argument("--markdown", action="store_true", help="print the table in Markdown instead of plain text")
    p.add_argument("--seed", type=int, default=0, help="seed for the random weights and inputs (default: 0)")
    args = p.parse_args(argv)
    if min(args.repeats, args.num_parts, *args.sizes, *(args.batch or [1])) < 1 or args.warmup < 0 or (
            args.batch and len(args.batch) not in (1, len(args.sizes))):
        p.error("sizes, batch, repeats, num-parts must be positive, warmup >= 0; --batch: one value or one per size")
    return args


def peak_mib(device: torch.device, reset: bool = False) -> float:
    """CUDA: max_memory_allocated. CPU: peak RSS (Linux VmHWM, which ``reset`` lowers to the RSS; else ru_maxrss)."""
    if device.type == "cuda":
        return torch.cuda.reset_peak_memory_stats(device) if reset else torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError, AttributeError):
        if reset:
            return Path("/proc/self/clear_refs").write_text("5")
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def measure(cases: dict, device: torch.device, warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{name: (median ms, peak MiB)}; the cases run round-robin so a slow spell of the machine hits all alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    times, peaks = {name: [] for name in cases}, dict.fromkeys(cases, 0.0)
    for round_ in range(warmup + repeats):
        for name, fn in cases.items():
            sync()
            peak_mib(device, reset=True)
            start = time.perf_counter()
            fn()
            sync()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
                peaks[name] = max(peaks[name], peak_mib(device))
    return {name: (statistics.median(times[name]) * 1e3, peaks[name]) for name in cases}


def bench_size(args: argparse.Namespace, device: torch.device, size: int, batch: int) -> list[dict]:
    torch.manual_seed(args.seed)
    cfg = MPAEConfig(image_size=size, num_parts=args.num_parts, backbone=args.backbone)
    model = MPAE(cfg, resolve_backbone(cfg.backbone, size, allow_random=True, **cfg.backbone_kwargs)).to(device)
    perceptual = resolve_perceptual_network(allow_random=True).to(device)
    optimizer = torch.optim.Adam(params := model.trainable_parameters(), lr=LR)
    amp = AMP[args.amp] if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    autocast = lambda: torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None)  # noqa: E731
    x = torch.randn(batch, 3, size, size, device=device)  # stands in for an ImageNet-normalised batch

    def optimizer_step() -> None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        scaler.step(optimizer)
        scaler.update()

    def full_step() -> None:  # Trainer._optimisation_step without the logging
        with autocast():
            total = model.training_losses(x, perceptual).losses["total"]
        if not torch.isfinite(total):
            raise RuntimeError(f"non-finite loss at S={size}; try --amp off")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        optimizer_step()

    with torch.no_grad(), autocast():  # one real forward: the parts' inputs, real shapes and dtypes, become leaves
        logits, descriptors, features = model(x)
        fill = torch.einsum("bqhw,bqc->bhwc", logits.softmax(dim=1), descriptors).reshape(batch, -1, cfg.descriptor_dim)
        mask = model.restoration.sample_mask(batch, device)
        restored = model.restoration(x, fill, mask)
    target, masked = restoration_target(x, cfg), mask.masked_pixels(cfg.grid_size, cfg.restoration_output_patch)
    logits, descriptors, features, fill, restored = (
        t.detach().requires_grad_() for t in (logits, descriptors, features, fill, restored))

    def fwd_bwd(forward):  # forward under the step's autocast, then backward from the scalar it returns
        def run() -> None:
            with autocast():
                loss = forward()
            loss.backward()
        return run

    def backbone_forward() -> None:
        with torch.no_grad(), autocast():
            model.backbone(x)

    def constraints() -> torch.Tensor:
        terms = constraint_losses(logits.softmax(dim=1), descriptors, features, cfg.group_size,
                                  arcface_scale=cfg.arcface_scale, arcface_margin=cfg.arcface_margin,
                                  semantic_variant=cfg.semantic_loss, entropy_variant=cfg.entropy_loss)
        return weighted_total(terms, cfg)

    cases = {  # the full step comes first in every round, so the optimizer part always finds gradients
        "full step": full_step,
        "backbone forward": backbone_forward,
        "PartFormer fwd+bwd": fwd_bwd(lambda: model.partformer(x).float().sum()),
        "restoration fwd+bwd": fwd_bwd(
            lambda: model.restoration(x, fill, model.restoration.sample_mask(batch, device)).float().sum()),
        "VGG perceptual fwd+bwd": fwd_bwd(
            lambda: reconstruction_loss(restored, target, perceptual, cfg, masked)["reconstruction"]),
        "constraint losses fwd+bwd": fwd_bwd(constraints),
        "optimizer (clip + Adam)": optimizer_step,
    }
    results = measure(cases, device, args.warmup, args.repeats)
    results["sum of the parts"] = (sum(ms for name, (ms, _) in results.items() if name != "full step"), None)
    step_ms = results["full step"][0]
    return [dict(size=size, batch=batch, what=name, ms=ms, share=100 * ms / step_ms,
                 ips=1e3 * batch / ms if name == "full step" else None,
                 mib=mib if name == "full step" or device.type == "cuda" else None)  # CPU RSS does not shrink
            for name, (ms, mib) in results.items()]


def format_table(rows: list[dict], markdown: bool) -> str:
    cells = [[str(r["size"]), str(r["batch"]), r["what"], f"{r['ms']:.1f}", f"{r['share']:.1f}",
              "" if r["ips"] is None else f"{r['ips']:.2f}", "" if r["mib"] is None else f"{r['mib']:.0f}"]
             for r in rows]
    return _table.format_table(COLUMNS, cells, markdown=markdown, text_column=2)

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in ("mpae_core.backbone", "mpae_core.perceptual"):  # the "RANDOM weights" warnings are expected
        logging.getLogger(name).setLevel(logging.ERROR)
    device = resolve_device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # as the trainer sets it on CUDA
    batches = args.batch or [64 if device.type == "cuda" else 8]
    batches = batches * len(args.sizes) if len(batches) == 1 else batches
    amp = args.amp if device.type == "cuda" else f"off{'' if args.amp == 'off' else f' (--amp {args.amp}: CUDA only)'}"
    print(f"MPAE training-step benchmark: {args.backbone} + VGG-19 (random weights), K={args.num_parts}, "
          f"Adam lr {LR}, clip {CLIP}")
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else next(
        iter(re.findall(r"^model name\s*:\s*(.+)$", info, re.M)), platform.machine())
    print(f"device: {device} ({name}), autocast: {amp}; torch {torch.__version__}, "
          f"timm {timm.__version__}, threads: {torch.get_num_threads()}")
    print(f"median of {args.repeats} run(s) after {args.warmup} warm-up run(s), all cases interleaved; "
          f"load average before: {_load():.2f}\n")
    rows = [row for size, batch in zip(args.sizes, batches) for row in bench_size(args, device, size, batch)]
    print(format_table(rows, args.markdown) + "\n")
    if device.type == "cuda":
        print("peak MiB: torch.cuda.max_memory_allocated during each case (weights, Adam state, inputs included).")
    else:
        print("peak MiB (full step only): peak RSS of the process during the step (Linux: VmHWM, reset before each "
              "run; elsewhere ru_maxrss), weights included. Freed memory stays mapped, so parts are not told apart.")
    print("% of step: a part's median time, timed alone with the same shapes, over the full step's median.\n")
    for r, total in zip((r for r in rows if r["what"] == "full step"), (r for r in rows if r["what"].startswith("sum"))):
        agree = "roughly agree" if 85 <= total["share"] <= 110 else (
            "do NOT agree (under 100 %: work outside the parts; over: noise, or the parts run slower alone)")
        print(f"S={r['size']} B={r['batch']}: {r['ms'] / 1e3:.3f} s/step, {r['ips']:.2f} images/s; "
              f"the parts sum to {total['share']:.0f} % of the step: they {agree}.")
    print(f"\nload average after: {_load():.2f} (other work on the machine skews CPU timings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
