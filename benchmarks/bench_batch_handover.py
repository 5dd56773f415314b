#!/usr/bin/env python
"""What the batch pipeline's hand-overs between processes cost, without any model (no GPU needed).

Two tables, each alternating the two ways a number of times:

* decoding → main process: a DataLoader over generated 640×480 JPEGs with images resized in the worker (PIL) or
  sent at full size for the device to resize (``resize_on_device``), milliseconds per image as the main process
  receives them;
* main process → encoders: export-index maps of 640×480 handed to one encoder process pickled through the pool's
  pipe, or through the shared ``MapArena``, maps per second (the encoders only look them up).

    python benchmarks/bench_batch_handover.py [--images 96] [--rounds 3] [--markdown]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402

import _table  # noqa: E402  (benchmarks/_table.py, beside this script)
from bench_batch import HEIGHT, WIDTH, make_images  # noqa: E402
from mpae_core.annotation.parts import PartTable  # noqa: E402
from mpae_core.batch.decode import make_loader  # noqa: E402
from mpae_core.batch.encode import EncodeJob, Encoders, Outputs  # noqa: E402
from mpae_core.batch.listing import ImageItem  # noqa: E402


def loader_ms_per_image(items: list[ImageItem], resize_on_device: bool, batch_size: int, workers: int) -> float:
    loader = make_loader(items, 224, batch_size, workers, pin_memory=False, resize_on_device=resize_on_device)
    batches = iter(loader)
    next(batches)  # the workers have started
    start = time.perf_counter()
    count = sum(len(batch["records"]) for batch in batches)
    return 1e3 * (time.perf_counter() - start) / count


def maps_per_second(shared: bool, batches: int, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        names = {f"{i}.jpg": f"{i}.png" for i in range(batch_size)}
        outputs = Outputs(Path(tmp), PartTable.default(16), names, ())  # no formats: the hand-over alone
        encoders = Encoders(outputs, 1, batch_size, max_pending=2 if shared else 0)
        maps = [np.full((HEIGHT, WIDTH), i, np.uint8) for i in range(batch_size)]
        pending = []
        start = time.perf_counter()
        for _ in range(batches):
            jobs = [EncodeJob(i, f"{i}.jpg", (HEIGHT, WIDTH), 0.0, indices=maps[i]) for i in range(batch_size)]
            for first in range(0, batch_size, encoders.chunk):
                pending.append(encoders.submit(jobs[first : first + encoders.chunk]))
            while len(pending) > 2:
                pending.pop(0).result()
        for future in pending:
            future.result()
        seconds = time.perf_counter() - start
        encoders.close()
    return batches * batch_size / seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=96, help="generated JPEGs for the loader table (default: 96)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="decoding processes (default: 1)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is shown (default: 3)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    loader = {False: [], True: []}
    handover = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="mpae-handover-") as tmp:
        make_images(Path(tmp), args.images, 0)
        items = [ImageItem(i, path.name, str(path)) for i, path in enumerate(sorted(Path(tmp).glob("*.jpg")))]
        for _ in range(args.rounds):
            for mode in (False, True):
                loader[mode].append(loader_ms_per_image(items, mode, args.batch_size, args.workers))
                handover[mode].append(maps_per_second(mode, 100, args.batch_size))
    print(f"{args.images} JPEGs {WIDTH}x{HEIGHT}, batch {args.batch_size}, {args.workers} decoding process(es), "
          f"median of {args.rounds} alternating rounds\n")
    rows = [["resized in the worker (PIL)", f"{statistics.median(loader[False]):.2f}"],
            ["full size, resized on the device", f"{statistics.median(loader[True]):.2f}"]]
    print(_table.format_table(["decoding -> main process", "ms/image"], rows, markdown=args.markdown,
                              text_column=0) + "\n")
    rows = [["pickled through the pool's pipe", f"{statistics.median(handover[False]):.0f}"],
            ["shared MapArena", f"{statistics.median(handover[True]):.0f}"]]
    print(_table.format_table(["main process -> 1 encoder", "maps/s"], rows, markdown=args.markdown,
                              text_column=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
