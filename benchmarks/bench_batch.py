#!/usr/bin/env python
"""Images/s of the whole headless batch pipeline against inference alone, with RANDOM weights (nothing downloaded).

It writes ``--images`` generated 640×480 JPEGs (random shapes and noise) to a temporary folder, then times:

* inference alone: ``Predictor.logits`` over the already preprocessed images, ``--batch-size`` at a time;
* the pipeline: ``mpae_core.batch.run_batch`` on the folder (listing, decoding and resizing in DataLoader workers,
  the same Predictor, full-resolution label maps, palette PNGs, COCO RLE, coco.json, report.json and the run's
  project: a prediction file per image and the index);
* the pipeline's marginal rate: the extra images of a full run over a run on half of them, per extra second,
  which leaves out the fixed cost of starting processes (what a run of thousands of images sees).

Both use one warm Predictor (CUDA graphs captured before timing). The issue's target: the pipeline runs at
≥ 90 % of inference-alone speed. A second table gives each CPU stage's cost per image on one thread, to see
what the pipeline has to hide behind the model.

    python benchmarks/bench_batch.py --device cuda --markdown
    python benchmarks/bench_batch.py --device cpu --backbone vit_small_patch14_reg4_dinov2 --images 100
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # random weights never need the hub
os.environ.pop("MPAE_BACKBONE_WEIGHTS", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

import _table  # noqa: E402  (benchmarks/_table.py, beside this script)
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from mpae_core.annotation.parts import PartTable  # noqa: E402
from mpae_core.annotation.storage import write_png  # noqa: E402
from mpae_core.backbone import resolve_backbone  # noqa: E402
from mpae_core.annotation.export import coco_annotations_for  # noqa: E402
from mpae_core.batch import BatchConfig, run_batch  # noqa: E402
from mpae_core.batch.store import PredictionFiles  # noqa: E402
from mpae_core.config import DEFAULT_BACKBONE, MPAEConfig  # noqa: E402
from mpae_core.devices import resolve_device  # noqa: E402
from mpae_core.images import load_image  # noqa: E402
from mpae_core.inference import Predictor, channel_lut, label_map_at, resize_for_model  # noqa: E402
from mpae_core.model import MPAE  # noqa: E402
from mpae_core.resize import resize_like_pillow  # noqa: E402

TARGET = 90.0  # pipeline images/s as % of inference alone
WIDTH, HEIGHT = 640, 480


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"timm backbone, random weights (default: {DEFAULT_BACKBONE}; use a small one on a CPU)")
    p.add_argument("--image-size", type=int, default=224, help="model input size S (default: 224)")
    p.add_argument("--num-parts", type=int, default=16, help="foreground parts K (default: 16)")
    p.add_argument("--images", type=int, default=200, help="generated 640x480 JPEGs (default: 200)")
    p.add_argument("--batch-size", type=int, default=8, help="images per model call (default: 8)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers (default: the CLI's, a third of the CPUs)")
    p.add_argument("--encoders", type=int, default=None,
                   help="label map + PNG + RLE processes (default: the pipeline's, half the CPUs; 0 = one thread)")
    p.add_argument("--maps", choices=("auto", "device", "encoders"), default="auto",
                   help="where the full-resolution label maps are made (default: auto = device unless CPU)")
    p.add_argument("--resize", choices=("auto", "device", "workers"), default="auto",
                   help="where images are resized to the model input (default: auto = device on CUDA)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each; the median is reported (default: 3)")
    p.add_argument("--markdown", action="store_true", help="print the tables in Markdown")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.images, args.batch_size, args.repeats, args.num_parts) < 1:
        p.error("images, batch-size, repeats and num-parts must be positive")
    return args


def make_images(folder: Path, count: int, seed: int) -> None:
    """640×480 JPEGs with a few random ellipses and rectangles over noise, blurred a little like photos."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        base = rng.integers(0, 256, size=3)
        noise = rng.normal(0, 20, size=(HEIGHT, WIDTH, 3))
        image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 9))):
            x0, y0 = int(rng.integers(0, WIDTH - 40)), int(rng.integers(0, HEIGHT - 40))
            box = (x0, y0, x0 + int(rng.integers(30, 300)), y0 + int(rng.integers(30, 250)))
            fill = tuple(int(c) for c in rng.integers(0, 256, size=3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
        image.filter(ImageFilter.GaussianBlur(1)).save(folder / f"img{i:04d}.jpg", quality=90)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_inference(predictor: Predictor, batches: list[torch.Tensor]) -> float:
    """Seconds to run the model over all batches (CPU logits, as the pipeline gets them)."""
    synchronize(predictor.device)
    start = time.perf_counter()
    for batch in batches:
        predictor.logits(batch)
    synchronize(predictor.device)
    return time.perf_counter() - start


def run_pipeline(predictor: Predictor, config: BatchConfig) -> tuple[float, int]:
    start = time.perf_counter()
    report = run_batch(config, predictor=predictor)
    return time.perf_counter() - start, len(report.failed)


def measure(predictor: Predictor, batches: list[torch.Tensor], config: BatchConfig, half: BatchConfig,
            repeats: int) -> tuple[float, float, float, int]:
    """Median seconds of inference alone, of the pipeline, and of the pipeline on half the images, run
    alternately so that a busy spell of a shared machine hits all alike; one untimed round first (CUDA graphs,
    file cache). The half run gives the marginal rate, without the fixed cost of starting the processes."""
    run_inference(predictor, batches)
    run_pipeline(predictor, config)
    infer, pipe, pipe_half, failed = [], [], [], 0
    for _ in range(repeats):
        infer.append(run_inference(predictor, batches))
        seconds, bad = run_pipeline(predictor, config)
        pipe.append(seconds)
        pipe_half.append(run_pipeline(predictor, half)[0])
        failed = max(failed, bad)
    return statistics.median(infer), statistics.median(pipe), statistics.median(pipe_half), failed


def stage_costs(predictor: Predictor, paths: list[Path], table: PartTable, scratch: Path) -> dict[str, float]:
    """Milliseconds per image of each CPU stage on one thread (median over a few images). The label map row is
    what an encoder pays when the maps are not made on the device."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a DataLoader worker; the encode threads share the intra-op pool
    lut = channel_lut(table.num_parts + 1, table.slot_to_export_index())
    costs: dict[str, list[float]] = {k: [] for k in ("decode + EXIF", "resize (uint8)", "label map (label_map_at)",
                                                     "palette PNG", "COCO RLE (coco_annotations_for)",
                                                     "project prediction file (summary + npz)")}
    prediction_files = PredictionFiles(scratch / "project", predictor.model.cfg.default_output_size)
    try:
        for path in paths[:20]:
            t0 = time.perf_counter()
            image = load_image(path)
            t1 = time.perf_counter()
            pixels = resize_for_model(image, predictor.image_size)
            t2 = time.perf_counter()
            logits = predictor.logits(pixels[None])[0]
            t3 = time.perf_counter()
            indices = label_map_at(logits, (image.height, image.width), lut=lut)
            t4 = time.perf_counter()
            png = Image.fromarray(indices)
            png.putpalette([0] * 768)
            write_png(scratch / "stage.png", png)
            t5 = time.perf_counter()
            coco_annotations_for(indices)
            t6 = time.perf_counter()
            prediction_files.write(path.name, logits.numpy(), (image.height, image.width), None)
            t7 = time.perf_counter()
            for key, seconds in zip(costs, (t1 - t0, t2 - t1, t4 - t3, t5 - t4, t6 - t5, t7 - t6)):
                seconds and costs[key].append(seconds)
    finally:
        torch.set_num_threads(torch_threads)
    return {k: 1e3 * statistics.median(v) for k, v in costs.items() if v}


def device_costs(predictor: Predictor, paths: list[Path], batch_size: int, repeats: int = 5) -> dict[str, float]:
    """Milliseconds per image of the work the device can take over, on a batch of ``batch_size`` images of one
    size: the exact-Pillow resize from full size, and the full-resolution label maps (copied back)."""
    device = predictor.device
    images = [load_image(p) for p in paths[:batch_size]]
    full = torch.stack([torch.from_numpy(np.array(im)) for im in images]).to(device).permute(0, 3, 1, 2)
    sizes = [(im.height, im.width) for im in images]
    lut = channel_lut(predictor.model.cfg.num_parts + 1)
    pixels = predictor.prepare(images)
    timings: dict[str, list[float]] = {"resize on the device (exact Pillow)": [], "label maps on the device": []}
    for _ in range(repeats + 1):  # the first round warms up
        synchronize(device)
        t0 = time.perf_counter()
        resize_like_pillow(full, (predictor.image_size, predictor.image_size))
        synchronize(device)
        t1 = time.perf_counter()
        predictor.maps_at_sizes(pixels, sizes, lut)  # includes one model call, subtracted below
        t2 = time.perf_counter()
        predictor.logits(pixels)
        t3 = time.perf_counter()
        timings["resize on the device (exact Pillow)"].append(t1 - t0)
        timings["label maps on the device"].append(max(0.0, (t2 - t1) - (t3 - t2)))
    return {k: 1e3 * statistics.median(v[1:]) / len(images) for k, v in timings.items()}


def table(rows: list[list[str]], header: list[str], markdown: bool) -> str:
    return _table.format_table(header, rows, markdown=markdown, text_column=0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("mpae_core.backbone").setLevel(logging.ERROR)  # the "RANDOM weights" warning is expected
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    cfg = MPAEConfig(backbone=args.backbone, image_size=args.image_size, num_parts=args.num_parts)
    model = MPAE(cfg, resolve_backbone(cfg.backbone, cfg.image_size, allow_random=True, **cfg.backbone_kwargs))
    predictor = Predictor(model, device)
    maps_on_device = {"auto": None, "device": True, "encoders": False}[args.maps]
    if maps_on_device is None:
        maps_on_device = device.type != "cpu"
    resize_on_device = {"auto": device.type == "cuda", "device": True, "workers": False}[args.resize]
    config_kw = dict(batch_size=args.batch_size, workers=args.workers, encoders=args.encoders,
                     overwrite=True, allow_random_backbone=True, maps_on_device=maps_on_device,
                     resize_on_device=resize_on_device)
    with tempfile.TemporaryDirectory(prefix="mpae-bench-batch-") as tmp:
        folder, out = Path(tmp, "images"), Path(tmp, "out")
        folder.mkdir()
        make_images(folder, args.images, args.seed)
        paths = sorted(folder.glob("*.jpg"))
        halfway = Path(tmp, "half")
        halfway.mkdir()
        for path in paths[: len(paths) // 2]:
            os.link(path, halfway / path.name)
        config = BatchConfig(images=folder, checkpoint=None, out=out, **config_kw)
        half = BatchConfig(images=halfway, checkpoint=None, out=Path(tmp, "out-half"), **config_kw)
        print(f"MPAE batch benchmark: {args.backbone} (random weights), S={args.image_size}, K={args.num_parts}, "
              f"{args.images} JPEGs {WIDTH}x{HEIGHT}")
        device_text = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs"
        print(f"device: {device} ({device_text}), batch {args.batch_size}, workers {config.num_workers}, encoder "
              f"processes {config.num_encoders}, label maps on the {'device' if maps_on_device else 'encoders'}, "
              f"resize on the {'device' if resize_on_device else 'workers'}, torch threads "
              f"{torch.get_num_threads()}; torch "
              f"{torch.__version__}, timm {timm.__version__}; median of {args.repeats} alternating run(s) after one "
              "warm-up\n")

        batches = [predictor.prepare([load_image(p) for p in paths[i : i + args.batch_size]])
                   for i in range(0, len(paths), args.batch_size)]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        infer_s, pipe_s, half_s, failed = measure(predictor, batches, config, half, args.repeats)
        costs = stage_costs(predictor, paths, PartTable.default(args.num_parts), Path(tmp))
        on_device = device_costs(predictor, paths, args.batch_size)

    n = args.images
    marginal = (n - n // 2) / (pipe_s - half_s) if pipe_s > half_s else None
    ratio = 100.0 * infer_s / pipe_s
    rows = [["inference alone (Predictor.logits)", f"{n}", f"{infer_s:.2f}", f"{n / infer_s:.1f}", "100 %"],
            ["batch pipeline (run_batch)", f"{n}", f"{pipe_s:.2f}", f"{n / pipe_s:.1f}", f"{ratio:.1f} %"],
            [f"  marginal: {n} minus {n // 2} images", f"{n - n // 2}", f"{pipe_s - half_s:.2f}",
             f"{marginal:.1f}" if marginal else "n/a (noise)",
             f"{100.0 * marginal / (n / infer_s):.1f} %" if marginal else "n/a"]]
    print(table(rows, ["what", "images", "seconds", "images/s", "of inference"], args.markdown) + "\n")
    stage_rows = [[k, f"{v:.2f}"] for k, v in costs.items()]
    stage_rows.append(["model (per image, this run)", f"{1e3 * infer_s / n:.2f}"])
    print(table(stage_rows, ["CPU stage, one thread", "ms/image"], args.markdown) + "\n")
    device_rows = [[k, f"{v:.3f}"] for k, v in on_device.items()]
    print(table(device_rows, [f"device work, batch of {args.batch_size} ({device.type})", "ms/image"],
                args.markdown) + "\n")
    decode = costs["decode + EXIF"] + (0.0 if resize_on_device else costs["resize (uint8)"])
    encode = (costs["palette PNG"] + costs["COCO RLE (coco_annotations_for)"]
              + costs["project prediction file (summary + npz)"])
    if not maps_on_device:
        encode += costs["label map (label_map_at)"]
    print(f"CPU ceiling if the stages scaled perfectly: {config.num_workers} decoders x 1000/{decode:.1f} ms = "
          f"{config.num_workers * 1e3 / decode:.0f} images/s, {config.num_encoders} encoders x 1000/{encode:.1f} ms = "
          f"{config.num_encoders * 1e3 / encode:.0f} images/s ({os.cpu_count()} CPUs in all).")
    if load is not None:
        print(f"load average before: {load:.2f}, after: {os.getloadavg()[0]:.2f} (other work skews CPU timings)")
    if failed:
        print(f"WARNING: {failed} images failed in the pipeline; the timing is not meaningful.")
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"{verdict}: the pipeline runs at {ratio:.1f} % of inference-alone speed (target >= {TARGET:.0f} %).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
