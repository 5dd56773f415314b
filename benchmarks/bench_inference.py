#!/usr/bin/env python
"""How much MPAE inference costs on top of its frozen backbone, with RANDOM weights (nothing is downloaded).

For each input size S and batch B it times, on a random ImageNet-normalised batch under ``torch.inference_mode``
(and, on CUDA, the Predictor's autocast and CUDA graphs): the backbone alone (the baseline, on the same engine),
``Predictor.probs`` to 128×128 and to S×S, and ``Predictor.label_maps`` at S×S (label maps on the device, moved to
the CPU as uint8).
It prints one table and the issue's targets: overhead ≤ 10 % at 128×128 output, ≤ 15 % at S×S.

    python benchmarks/bench_inference.py --device cuda --sizes 224 448 --batches 1 8 --markdown
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: random weights never need the hub
os.environ.pop("MPAE_BACKBONE_WEIGHTS", None)  # resolve_backbone would otherwise load that file instead
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import timm  # noqa: E402
import torch  # noqa: E402

import _table  # noqa: E402  (benchmarks/_table.py, beside this script)

from mpae_core.backbone import resolve_backbone  # noqa: E402
from mpae_core.config import DEFAULT_BACKBONE, MPAEConfig  # noqa: E402
from mpae_core.devices import PRECISIONS, autocast_dtype, resolve_device  # noqa: E402
from mpae_core.cuda_graphs import GraphedFunction  # noqa: E402
from mpae_core.inference import IMAGENET_MEAN, IMAGENET_STD, Predictor  # noqa: E402
from mpae_core.model import MPAE  # noqa: E402

TARGETS = {"probs 128x128": 10.0, "probs SxS": 15.0, "label map SxS": 15.0}  # max overhead vs backbone, %
COLUMNS = ("size", "batch", "what", "ms/batch", "images/s", "peak MiB", "overhead vs backbone")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run: auto picks CUDA when available, else the CPU (default: auto)")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 448], metavar="S",
                   help="input sizes S (multiples of the patch size 14); one model is built per size (default: 224 448)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8], metavar="B",
                   help="batch sizes B to time at every size (default: 1 8)")
    p.add_argument("--repeats", type=int, default=10,
                   help="timed runs per measurement; the median is reported (default: 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before each measurement (default: 3)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"timm backbone name, built with random weights (default: {DEFAULT_BACKBONE})")
    p.add_argument("--num-parts", type=int, default=16, metavar="K",
                   help="foreground parts K; the model has K + 1 slots (default: 16)")
    p.add_argument("--engine", default="graphs", choices=("graphs", "eager"),
                   help="on CUDA, replay captured CUDA graphs (what the Predictor does) or run eagerly; both the "
                        "baseline and the full inference use the same engine (default: graphs)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="autocast on CUDA, as the Predictor's option (auto = its default); CPU runs fp32 (default: auto)")
    p.add_argument("--compile-partformer", action="store_true",
                   help="torch.compile the PartFormer first (an experiment: does fusing its small kernels bring the "
                        "overhead under the targets? the app does not compile yet)")
    p.add_argument("--markdown", action="store_true", help="print the table in Markdown instead of plain text")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed for weights and inputs (default: 0)")
    args = p.parse_args(argv)
    if min(args.repeats, *args.sizes, *args.batches) < 1 or args.warmup < 0 or args.num_parts < 1:
        p.error("sizes, batches, repeats and num-parts must be positive, warmup non-negative")
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # "auto" may pick Apple MPS
        torch.mps.synchronize()


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset. Elsewhere: the process's peak RSS so far (never goes down)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def measure(cases: dict, device: torch.device, warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{name: (median ms per call, peak MiB)}. The cases run round-robin, so a slow spell of a shared machine
    hits all of them alike instead of skewing one; ``warmup`` untimed rounds come first."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    peaks = dict.fromkeys(cases, 0.0)
    for _ in range(repeats):
        for name, fn in cases.items():
            synchronize(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
            peaks[name] = max(peaks[name], peak_memory_mib(device))
    return {name: (statistics.median(times[name]) * 1e3, peaks[name]) for name in cases}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def random_batch(batch: int, size: int, device: torch.device) -> torch.Tensor:
    pixels = torch.rand(batch, 3, size, size)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((pixels - mean) / std).to(device)


def bench_size(args: argparse.Namespace, device: torch.device, size: int) -> list[dict]:
    cfg = MPAEConfig(image_size=size, num_parts=args.num_parts, backbone=args.backbone)
    backbone = resolve_backbone(cfg.backbone, cfg.image_size, allow_random=True, **cfg.backbone_kwargs)
    model = MPAE(cfg, backbone).to(device).eval()
    if args.compile_partformer:
        model.partformer = torch.compile(model.partformer, dynamic=False)  # compiled in the graphs' warm-up runs
    graphs = args.engine == "graphs"
    predictor = Predictor(model, device, precision=args.precision, cuda_graphs=graphs)  # the app's path
    amp = autocast_dtype(device, args.precision)

    def backbone_alone(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None, cache_enabled=False):
            return model.backbone(x)

    def partformer_alone(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None, cache_enabled=False):
            return model.partformer(x)

    backbone = GraphedFunction(backbone_alone, enabled=graphs)  # the baseline runs on the same engine
    partformer = GraphedFunction(partformer_alone, enabled=graphs)  # explains the overhead; no target
    rows = []
    for batch in args.batches:
        x = random_batch(batch, size, device)
        cases = {
            "backbone": lambda: backbone(x),
            "probs 128x128": lambda: predictor.probs(x, (128, 128)),
            "probs SxS": lambda: predictor.probs(x, (size, size)),
            "label map SxS": lambda: predictor.label_maps(x, (size, size)),
            "partformer alone": lambda: partformer(x),
        }
        with torch.inference_mode():
            results = measure(cases, device, args.warmup, args.repeats)
        base_ms = results["backbone"][0]
        for what, (ms, mib) in results.items():
            overhead = None if what == "backbone" else 100.0 * (ms - base_ms) / base_ms
            rows.append(dict(size=size, batch=batch, what=what, ms=ms, ips=1e3 * batch / ms, mib=mib, overhead=overhead))
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def _overhead_text(row: dict) -> str:
    if row["overhead"] is None:
        return "—"
    if row["what"] not in TARGETS:  # a component timed alone: show its share of the backbone's time
        return f"({row['overhead'] + 100:.1f} % of it)"
    return f"{row['overhead']:+.1f} %"


def format_table(rows: list[dict], markdown: bool) -> str:
    cells = [
        [f"{r['size']}", f"{r['batch']}", r["what"].replace("SxS", f"{r['size']}x{r['size']}"), f"{r['ms']:.1f}",
         f"{r['ips']:.2f}", f"{r['mib']:.0f}", _overhead_text(r)]
        for r in rows
    ]
    return _table.format_table(COLUMNS, cells, markdown=markdown, text_column=2)

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("mpae_core.backbone").setLevel(logging.ERROR)  # the "RANDOM weights" warning is expected
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    amp = autocast_dtype(device, args.precision)
    print(f"MPAE inference benchmark: {args.backbone} (random weights), K={args.num_parts}")
    engine = args.engine if device.type == "cuda" else "eager"
    compiled = ", PartFormer compiled" if args.compile_partformer else ""
    print(f"device: {device} ({device_name(device)}), autocast: {amp or 'off'}, engine: {engine}{compiled}; "
          f"torch {torch.__version__}, timm {timm.__version__}, threads: {torch.get_num_threads()}")
    load = f"; load average before: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"median of {args.repeats} run(s) after {args.warmup} warm-up run(s), the four cases interleaved{load}\n")
    rows = [row for size in args.sizes for row in bench_size(args, device, size)]
    print(format_table(rows, args.markdown) + "\n")
    if device.type == "cuda":
        print("peak MiB: torch.cuda.max_memory_allocated during the timed runs (weights and input included).")
    else:
        print("peak MiB: process peak RSS so far (ru_maxrss); it never decreases, so it reads as a running maximum.")
    print("label map: Predictor.label_maps at SxS (argmax on the device, uint8 maps copied to the CPU).")
    print("partformer alone: the descriptor ViT by itself (no target; its column is its share of the backbone).\n")
    print("Targets (overhead vs backbone): <= 10 % at 128x128 output, <= 15 % at full image size (SxS)")
    failed = 0
    for r in (r for r in rows if r["what"] in TARGETS):
        target = TARGETS[r["what"]]
        ok = r["overhead"] <= target
        failed += not ok
        print(f"  {'PASS' if ok else 'FAIL'}  S={r['size']:<4} B={r['batch']:<3} {r['what']:<14} "
              f"{r['overhead']:+6.1f} %  (target <= {target:.0f} %)")
    if hasattr(os, "getloadavg"):
        print(f"\nload average after: {os.getloadavg()[0]:.2f} (other work on the machine skews CPU timings)")
    print(f"\n{failed} of {sum(r['what'] in TARGETS for r in rows)} rows miss their target.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
