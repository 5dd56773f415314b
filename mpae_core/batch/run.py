"""Stage 2 and the whole run: the model loop that feeds the encoders, and ``run_batch``."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch

from ..annotation.export import PngMaskWriter, unique_mask_relpaths, write_label_files
from ..annotation.export_folder import ExportRecorder
from ..annotation.parts import PartTable
from ..checkpoint import load_checkpoint
from ..inference import Predictor
from ..resize import matches_installed_pillow
from ..worker_signals import DataWorkerError, worker_batches
from .config import (CACHE_DIR, CANCELLED, ERROR, OK, SKIPPED, BatchConfig, BatchProgress, BatchReport,
                     BatchUsageError, ImageResult, ProgressCallback)
from .decode import make_loader, model_input
from .derived import derived_writer, write_derived
from .encode import EncodeJob, Encoders, Outputs
from .listing import ImageItem, collect_images
from .report import (checkpoint_fingerprint, describe_device, has_outputs, is_finished, previous_statuses, report_dict,
                     write_coco, write_report)
from .shards import Shard, barrier, init_distributed, merge_ranks, rank_file_paths
from .store import BatchStore

logger = logging.getLogger(__name__)


# ----- stage 2: the model loop ------------------------------------------------------------------------------------
class _Tally:
    """Counts results and reports progress; results are kept by their index in the full list."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        self.total, self.progress = total, progress
        self.results: dict[int, ImageResult] = {}
        self.counts = {OK: 0, ERROR: 0, SKIPPED: 0, CANCELLED: 0}

    def add(self, index: int, result: ImageResult) -> None:
        self.results[index] = result
        self.counts[result.status] += 1
        if result.status == ERROR:
            logger.info("%s", result.error)
        if self.progress is not None and result.status != CANCELLED:  # a cancelled image made no progress
            self.progress(BatchProgress(len(self.results), self.total, self.counts[OK], self.counts[ERROR],
                                        self.counts[SKIPPED], result.file, result.status))


def _pad(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a short batch to the usual size so CUDA graphs replay one captured shape instead of capturing more."""
    if pixels.shape[0] >= size:
        return pixels
    return torch.cat([pixels, pixels.new_zeros((size - pixels.shape[0], *pixels.shape[1:]))])


def predict_jobs(predictor: Predictor, batch: dict, good: list[dict], pad_to: int,
                 maps_lut: np.ndarray | None) -> list[EncodeJob]:
    """One model call for a batch's readable images → their encode jobs: logits for the encoders to turn into
    label maps and prediction files, and (``maps_lut`` given) the export-index maps made on the device."""
    start = time.perf_counter()
    padded = _pad(model_input(batch, good, predictor.image_size, predictor.device), pad_to)
    if maps_lut is None:
        logits = predictor.logits(padded)[: len(good)].numpy()
        payloads = [{"logits": row} for row in logits]
    else:
        device_logits, maps = predictor.logits_and_maps(padded, [r["size"] for r in good], maps_lut)
        payloads = [{"indices": indices, "logits": row} for indices, row in zip(maps, device_logits.numpy())]
    share = (time.perf_counter() - start) / len(good)
    return [EncodeJob(r["index"], r["relpath"], r["size"], r["seconds"] + share, stamp=r.get("stamp"), **payload)
            for r, payload in zip(good, payloads)]


def predict_and_encode(predictor: Predictor, loader: torch.utils.data.DataLoader, encoders: Encoders,
                       tally: _Tally, max_pending: int, cancel: threading.Event | None,
                       maps_lut: np.ndarray | None = None) -> bool:
    """The main loop: model calls here, encoding in ``encoders``; returns True when it stopped early (cancel flag
    or Ctrl-C). At most ``max_pending`` encode jobs wait, which bounds memory. ``maps_lut`` (channel → export
    index) makes the label maps on the model's device."""
    pending: deque[tuple[list[int], Future]] = deque()
    pad_to = loader.batch_size if predictor.device.type == "cuda" else 0
    stopped = False

    def collect(block: bool) -> None:
        while pending and (block or pending[0][1].done() or len(pending) > max_pending):
            indices, future = pending.popleft()
            for index, result in zip(indices, future.result()):
                tally.add(index, result)

    batches = worker_batches(loader)
    try:
        for batch in batches:
            if cancel is not None and cancel.is_set():
                stopped = True
                break
            records = batch["records"]
            good = [r for r in records if r["error"] is None]
            for r in records:
                if r["error"] is not None:
                    tally.add(r["index"], ImageResult(r["relpath"], ERROR, r["error"], seconds=r["seconds"]))
            if good:
                jobs = predict_jobs(predictor, batch, good, pad_to, maps_lut)
                for start in range(0, len(jobs), encoders.chunk):  # spread a batch over the encoders
                    chunk = jobs[start : start + encoders.chunk]
                    pending.append(([job.index for job in chunk], encoders.submit(chunk)))
            collect(block=False)
    except KeyboardInterrupt:
        logger.warning("Interrupted; finishing the images already predicted.")
        stopped = True
    except DataWorkerError as exc:  # the CLI reports usage errors in one line and exits 2
        raise BatchUsageError(str(exc)) from None
    finally:
        batches.close()  # the decoding workers stop now, however the loop ended
        collect(block=True)
    return stopped


# ----- the run ------------------------------------------------------------------------------------------------------
def _load_model(config: BatchConfig, device: torch.device):
    if config.checkpoint is None:
        raise BatchUsageError("No checkpoint given; pass --checkpoint.")
    return load_checkpoint(config.checkpoint, backbone_weights=config.backbone_weights,
                           allow_random_backbone=config.allow_random_backbone, device=device)


def _resolve_placement(config: BatchConfig, device: torch.device) -> BatchConfig:
    """Decide where label maps are made and images resized: on the model's device unless it is the CPU (the
    resize: unless it is not CUDA), or as told; device resizing also needs this Pillow reproduced exactly."""
    maps = device.type != "cpu" if config.maps_on_device is None else config.maps_on_device
    # the exact integer resize is checked on CUDA (tests/test_cuda.py); MPS's 64-bit integer support varies
    resize = device.type == "cuda" if config.resize_on_device is None else config.resize_on_device
    if resize and not matches_installed_pillow():
        logger.warning("Resizing images in the decoding processes: this Pillow cannot be reproduced on the device.")
        resize = False
    return dataclasses.replace(config, maps_on_device=maps, resize_on_device=resize)


def _resolve_device(name: str) -> torch.device:
    from ..devices import resolve_device

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise BatchUsageError(str(exc).split("\n")[0]) from None


def _check_out(out: Path, create: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BatchUsageError(f"The output '{out}' is a file; choose a folder.")
    if not create:
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchUsageError(f"Cannot create the output folder '{out}': {exc.strerror or exc}.") from None


def run_batch(config: BatchConfig, *, progress: ProgressCallback | None = None,
              cancel: threading.Event | None = None, model=None, predictor: Predictor | None = None,
              shard: Shard | None = None) -> BatchReport:
    """Pre-annotate ``config.images`` into ``config.out``; see the module docstring.

    ``model`` (or a ready ``predictor``, whose device wins) skips loading the checkpoint: the app and the benchmark
    pass theirs. ``cancel`` stops the run between batches and still writes the report of what was done; ``shard``
    defaults to torchrun's environment. Raises BatchUsageError / CheckpointError / BackboneWeightsError before
    anything is written when the run cannot start.
    """
    started = time.perf_counter()
    shard = shard or Shard.from_env()
    items = collect_images(config.images, config.out, config.recursive)
    _check_out(config.out, create=False)  # created only once the model has loaded
    recorder = ExportRecorder(config.out, tool="batch", source=config.images.resolve()) if shard.rank == 0 else None
    device = predictor.device if predictor is not None else _resolve_device(shard.device(config.device))
    joined = init_distributed(shard, device) if shard.distributed else False
    try:
        if predictor is None:
            predictor = Predictor(model if model is not None else _load_model(config, device), device,
                                  precision=config.precision)
        model = predictor.model
        config = _resolve_placement(config, predictor.device)
        _check_out(config.out, create=True)
        table = PartTable.from_model_info(model.info.part_names, model.info.part_colors)
        fingerprint = (checkpoint_fingerprint(config.checkpoint) if config.checkpoint is not None
                       and config.checkpoint.is_file() else None)
        store = BatchStore.open(config, items, model, table, shard)  # refuses before anything is written
        try:
            if recorder is not None:
                recorder.begin()
            outputs = Outputs(config.out, table, unique_mask_relpaths(i.relpath for i in items), config.formats,
                              coco_style=config.coco_style, predictions=store.files)
            if shard.rank == 0:
                write_label_files(table.export_labels(), config.out)
            (config.out / CACHE_DIR).mkdir(exist_ok=True)  # also marks OUT as a batch output for later listings
            if outputs.writes_masks:
                outputs.png = PngMaskWriter(config.out, table, mask_names=outputs.mask_names, write_labels=False)
            mine = shard.take(items)
            report = _run_shard(config, predictor, outputs, store, mine, fingerprint, progress, cancel, started,
                                shard)
            store.hand_in(report.images)
            _write_rank_files(config, outputs, report, model, fingerprint, shard)
            if shard.distributed:
                barrier(device)
                if shard.rank == 0:
                    report = merge_ranks(config, report, items, started, shard,
                                         finish=derived_writer(config, outputs))
                    store.merge_ranks()
            report.project_dir = store.project_dir
        finally:
            store.close()
        if recorder is not None:
            _record_outputs(recorder, outputs, items, report)
        return report
    except BaseException:
        if recorder is not None and recorder.began:
            try:  # what was written so far joins OUT's export list, so a later run knows it; nothing is deleted
                recorder.finish(complete=False, images=0)
            except OSError as exc:
                logger.warning("Could not record the unfinished run in %s: %s", config.out, exc)
        raise
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run_shard(config: BatchConfig, predictor: Predictor, outputs: Outputs, store: BatchStore, mine: list[ImageItem],
               fingerprint: str | None, progress: ProgressCallback | None, cancel: threading.Event | None,
               started: float, shard: Shard) -> BatchReport:
    """Predict this rank's images but those finished earlier (report, outputs and project agree) and those a
    person edited or reviewed in the project (never predicted again, not even with --overwrite)."""
    previous = {} if config.overwrite else previous_statuses(config.out, fingerprint)
    tally = _Tally(len(mine), progress)
    todo, left_alone = [], 0
    for item in mine:
        mask = outputs.mask_relpath(item.relpath) if "png" in config.formats else None
        if store.leaves_alone(item.relpath):
            left_alone += 1
            there = has_outputs(outputs, item.relpath)
            tally.add(item.index, ImageResult(item.relpath, SKIPPED, mask=mask) if there
                      else store.left_alone_error(item.relpath))
        elif is_finished(outputs, item.relpath, previous) and store.holds(item):
            tally.add(item.index, ImageResult(item.relpath, SKIPPED, mask=mask))
        else:
            todo.append(item)
    logger.info("%d images to predict, %d finished earlier, %d edited or reviewed in %s left alone (rank %d of %d)",
                len(todo), len(mine) - len(todo) - left_alone, left_alone, store.project_dir, shard.rank,
                shard.world_size)
    stopped = False
    if todo:
        max_pending = 2 * max(1, config.num_encoders)
        encoders = Encoders(outputs, config.num_encoders, config.batch_size,  # forked before the loader's threads
                            max_pending=max_pending if config.maps_on_device else 0)
        try:
            loader = make_loader(todo, predictor.image_size, config.batch_size, config.num_workers,
                                 pin_memory=predictor.device.type == "cuda", resize_on_device=config.resize_on_device)
            maps_lut = outputs.channel_to_export if config.maps_on_device else None
            stopped = predict_and_encode(predictor, loader, encoders, tally, max_pending, cancel, maps_lut)
        finally:
            encoders.close()
    for item in todo:
        if item.index not in tally.results:
            tally.add(item.index, ImageResult(item.relpath, CANCELLED))
    results = [tally.results[i.index] for i in mine]
    return BatchReport(config.out, results, time.perf_counter() - started, describe_device(predictor.device),
                       cancelled=stopped, rank=shard.rank, world_size=shard.world_size)


def _write_rank_files(config: BatchConfig, outputs: Outputs, report: BatchReport, model, fingerprint: str | None,
                      shard: Shard) -> None:
    """This process's coco and report files (the final ones when there is one rank), and with one rank the formats
    derived from the masks (with several, rank 0 writes those once every rank is done)."""
    coco_path, report_path = rank_file_paths(config.out, shard)
    if outputs.coco_rle:
        report.coco_path = write_coco(outputs, report.images, coco_path)
    if not shard.distributed:
        report.coco_path = write_derived(config, outputs, report.images).get("coco", report.coco_path)
    report.report_path = write_report(report_path, report_dict(config, report, model, fingerprint))


def _record_outputs(recorder: ExportRecorder, outputs: Outputs, items: list[ImageItem], report: BatchReport) -> None:
    """The files of OUT that this run wrote or still owns (every listed image's mask and cached RLE) go into its
    export list; after a complete run, a batch run's earlier files for images no longer listed are deleted (an
    app export that was there is never trimmed by a batch run)."""
    keep = [path for item in items
            for path in (outputs.out / outputs.mask_relpath(item.relpath), outputs.cache_path(item.relpath))]
    earlier = recorder.previous_marker
    removed = recorder.finish(complete=not report.cancelled, images=report.count(OK) + report.count(SKIPPED),
                              keep=keep, remove_stale=earlier is None or earlier.tool == "batch")
    if removed:
        logger.info("Removed %d files of earlier runs for images that are no longer in %s", len(removed),
                    outputs.out)
