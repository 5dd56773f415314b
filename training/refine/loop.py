"""The refinement loop: fine-tune a copy of the project's model on the project itself, then save it beside the others.

Trainable: the compress conv and the PartFormer. The backbone stays frozen and is read from the feature cache. The
restoration network is trained only with ``reconstruction=True``: the reconstruction term needs it and the frozen
VGG-19, and most checkpoints people annotate with are inference-only (the demo's, any ``--inference-only`` export)
and have no restoration network, while VGG weights may not be on the machine. So by default the unsupervised part
of the objective is the five constraint terms (presence, semantic, total variation, entropy), which keep parts
consistent on the images nobody corrected, and the run says so; the restoration network of a full checkpoint is
saved unchanged.

Batches: the first ``corrected_per_step`` images are corrected ones (cycling through all their views in a shuffled
order, mirror views included, whose targets are mirrored too), the rest are drawn from every image of the project.
The corrected ones are then transformed afresh (augment.py) and encoded again, so a few corrections teach poses
and colours they do not show. The MPAE terms see the whole batch, the supervised term its corrected part. The
saved weights are a moving average over the steps (averaging.py).

Stopping: the first SIGINT/SIGTERM (the app's Stop) ends the loop after the current step and saves what was learned;
a second one cancels at once and nothing is written to the project's models folder. ``seconds`` ends the loop the
same way when the time budget is spent.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from mpae_core.annotation.models import new_model_path
from mpae_core.annotation.storage import atomic_write, atomic_write_json
from mpae_core.checkpoint import LINEAGE_KEY, checkpoint_metadata, is_inference_only, model_fingerprint, save_checkpoint
from mpae_core.devices import resolve_device
from mpae_core.errors import CheckpointError, MPAEError
from mpae_core.images import ImageLoadError
from mpae_core.inference import normalise
from mpae_core.model import ModelInfo
from mpae_core.perceptual import resolve_perceptual_network

from .. import stop
from .augment import AugmentConfig, augment
from .averaging import WeightAverage
from .features import DEFAULT_MEMORY_BYTES, FeatureCache
from .objective import DEFAULT_SUPERVISED_WEIGHT, agreement, refine_losses
from .session import RefineInputError, RefineSession

logger = logging.getLogger(__name__)

CACHE_DIRNAME = "cache/features"
SCHEDULES = ("constant", "cosine")  # learning rate over a run (RefineConfig.schedule)


@dataclass
class RefineConfig:
    """One refinement run; the defaults are the ones benchmarks/bench_refine.py measured.

    What made the difference there (held-out fg mIoU, start model 7.4; one thread, same seeds): transforming the
    corrected images in every step (``augment``, augment.py: 3 images 12.9 → 21.9 and 10 images 16.2 with geometry
    alone → 25.9 with colour too, after 300 steps), then a higher rate with the saved weights averaged (``lr`` 2e-4,
    ``average`` 0.99: 10 images 25.9 → 28.4 after 300 steps, 32.4 after 600; without the average the score swings by
    ±3 points from one step to the next). No gain: a cosine rate schedule (22.9 after 600 steps: the run still
    learns at its end), supervised weight 3 (28.7). Before augmentation, nothing else beat run-to-run noise: lr 3e-4
    or 1e-3 (collapses), supervised weight 3 or 10, pixel averaging, the compress conv alone, batch 8, a softmax
    temperature; with 200 fully corrected images and no augmentation the refinement plateaued near 26.
    """

    steps: int = 600
    seconds: float = 0.0  # wall-clock budget for the loop (0 = none); whichever of steps/seconds ends first
    batch_size: int = 16
    corrected_per_step: int = 8
    lr: float = 2e-4
    supervised_weight: float = DEFAULT_SUPERVISED_WEIGHT
    balanced: bool = True  # each target group's mean loss counts equally (small parts as much as the background)
    clip_grad: float = 2.0
    flip: bool = True  # mirrored views of every image (the reference trains with flips)
    augment: str = "colour+geometry"  # random transforms of the corrected images (augment.py): none | geometry | ...
    average: float = 0.99  # decay of the saved moving average of the weights (averaging.py); 0 = last step's
    schedule: str = "constant"  # learning rate over the run: constant | cosine (to 0 at --steps or --seconds)
    reconstruction: bool = False
    seed: int = 0
    amp: str = "off"
    log_every: int = 5
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    disk_cache: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RefineResult:
    checkpoint: Path  # the new model in the project's models folder
    run_checkpoint: Path
    steps: int
    seconds: float
    stopped_early: bool
    agreement_before: float
    agreement_after: float
    summary: dict[str, Any]


class Refiner:
    def __init__(self, session: RefineSession, out: str | os.PathLike, cfg: RefineConfig, *, device: str = "auto",
                 name: str | None = None, vgg_weights: str | None = None, allow_random_vgg: bool = False) -> None:
        self.session, self.cfg = session, cfg
        self.out = Path(out)
        self.device = resolve_device(device)
        self.model = session.model.to(self.device)
        self.name = name or datetime.now().strftime("refined-%Y%m%d-%H%M%S")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp) if self.device.type == "cuda" \
            else None
        if cfg.reconstruction and is_inference_only(self.model):
            raise RefineInputError(f"The checkpoint '{session.checkpoint}' is inference-only (no restoration "
                                   "network), so it cannot be refined with the reconstruction term; refine without "
                                   "--reconstruction or use a full checkpoint.")
        self.perceptual = None
        if cfg.reconstruction:
            self.perceptual = resolve_perceptual_network(vgg_weights, allow_random=allow_random_vgg).to(self.device)
        folder = session.project.project_dir / CACHE_DIRNAME if cfg.disk_cache else None
        self.cache = FeatureCache(self.model.backbone, self.model.cfg, folder, device=self.device,
                                  memory_bytes=cfg.memory_bytes, amp_dtype=self.amp_dtype)
        self.trainable = self._set_trainable()
        self.optimizer = torch.optim.Adam(self.trainable, lr=cfg.lr)
        self.average = WeightAverage(self.trainable, cfg.average) if cfg.average > 0 else None
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"Unknown learning-rate schedule {cfg.schedule!r}; choose {' or '.join(SCHEDULES)}.")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.rng = random.Random(cfg.seed)
        self.augment = AugmentConfig(mode=cfg.augment)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.views = (0, 1) if cfg.flip else (0,)
        self.pool = list(session.pool)
        self.skipped = {rel: "the file is gone" for rel in session.skipped}
        self._cycle: list[tuple[int, int]] = []
        self.metrics_path = self.out / "metrics.jsonl"

    # ----- setup ------------------------------------------------------------------------------------------------
    def _set_trainable(self) -> list[torch.nn.Parameter]:
        self.model.requires_grad_(False)
        modules = [self.model.compress, self.model.partformer]
        if self.cfg.reconstruction:
            modules.append(self.model.restoration)
        for module in modules:
            module.requires_grad_(True)
        return [p for m in modules for p in m.parameters()]

    # ----- batches ----------------------------------------------------------------------------------------------
    def _corrected_items(self, count: int) -> list[tuple[int, int]]:
        """(corrected index, view) pairs, cycling through every pair in a shuffled order."""
        items = []
        while len(items) < count:
            if not self._cycle:
                self._cycle = [(i, v) for i in range(len(self.session.corrected)) for v in self.views]
                self.rng.shuffle(self._cycle)
            items.append(self._cycle.pop())
        return items

    def _views(self, items: list[tuple[str, Path, int]]):
        """Encoded views of ``items``; an uncorrected image that cannot be read is dropped from the pool and
        replaced (corrected ones were checked before the run; if one breaks now, its error stops the run)."""
        while True:
            try:
                return self.cache.get(items)
            except ImageLoadError as exc:
                bad = next((i for i, (_, path, _) in enumerate(items) if Path(path) == Path(exc.path)), None)
                corrected_paths = {c.path for c in self.session.corrected}
                if bad is None or Path(exc.path) in corrected_paths:
                    raise
                relpath = items[bad][0]
                logger.warning("Leaving out %s: %s", relpath, exc)
                self.skipped[relpath] = exc.reason
                self.pool = [entry for entry in self.pool if entry[0] != relpath]
                if not self.pool:
                    raise RefineInputError("No image of the project can be read any more; check the image folder.") \
                        from None
                rel, path = self.rng.choice(self.pool)
                items[bad] = (rel, path, self.rng.choice(self.views))

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        corrected = self.session.corrected
        n_corrected = min(self.cfg.corrected_per_step, len(corrected) * len(self.views), self.cfg.batch_size)
        chosen = self._corrected_items(n_corrected)
        items = [(corrected[i].relpath, corrected[i].path, v) for i, v in chosen]
        for _ in range(self.cfg.batch_size - n_corrected):
            rel, path = self.rng.choice(self.pool)
            items.append((rel, path, self.rng.choice(self.views)))
        views = self._views(items)
        pixels = torch.stack([v.pixels for v in views]).to(self.device)
        tokens = torch.stack([v.tokens for v in views]).to(self.device)
        targets = torch.stack([
            torch.from_numpy(corrected[i].targets[:, ::-1].copy() if v == 1 else corrected[i].targets)
            for i, v in chosen
        ]).to(self.device)
        if self.augment.mode != "none":  # the corrected images, transformed afresh and encoded again (augment.py)
            pixels[:n_corrected], targets = augment(pixels[:n_corrected], targets, self.augment, self.generator)
            tokens[:n_corrected] = self.cache.tokens_of(pixels[:n_corrected])
        return normalise(pixels), tokens, targets

    # ----- measuring ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def corrected_agreement(self) -> float:
        """% of the corrected pixels whose predicted slot is in their target group (view 0, S×S)."""
        was_training = self.model.training
        self.model.eval()
        hits = total = 0
        corrected = self.session.corrected
        for start in range(0, len(corrected), 16):
            chunk = corrected[start : start + 16]
            views = self.cache.get([(c.relpath, c.path, 0) for c in chunk])
            pixels = normalise(torch.stack([v.pixels for v in views]).to(self.device))
            tokens = torch.stack([v.tokens for v in views]).to(self.device)
            logits = self.model.match(self.model.partformer(pixels).float(), self.model.compress_tokens(tokens))
            targets = torch.stack([torch.from_numpy(c.targets) for c in chunk]).to(self.device)
            h, t = agreement(logits, targets, self.session.groups)
            hits, total = hits + h, total + t
        self.model.train(was_training)
        return 100.0 * hits / max(total, 1)

    # ----- loop -------------------------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _learning_rate(self, progress: float) -> float:
        """The rate for a step at ``progress`` ∈ [0, 1] of the run (steps or seconds, whichever is further)."""
        if self.cfg.schedule == "constant":
            return self.cfg.lr
        return 0.5 * self.cfg.lr * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    def _step(self, lr: float) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        pixels, tokens, targets = self._batch()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = refine_losses(self.model, pixels, tokens, targets, self.session.groups,
                                self.cfg.supervised_weight, self.perceptual, self.cfg.balanced)
        total = out.losses["total"]
        if not torch.isfinite(total):
            terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in out.losses.items())
            raise MPAEError(f"Refinement stopped: the loss is not finite ({terms}); nothing was saved, try a lower "
                            "--lr or --amp off.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average is not None:
            self.average.update()
        return {k: float(v.detach()) for k, v in out.losses.items()}

    def run(self) -> RefineResult:
        """Refine, then save the model into the run folder and the project's models folder (nothing on a cancel)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        self.metrics_path.unlink(missing_ok=True)
        atomic_write_json(self.out / "config.json", self._config_record(), fsync=False)
        if self.perceptual is None:
            logger.info("Refining without the reconstruction term (constraint terms + corrections); the restoration "
                        "network is not trained.")
        before = self.corrected_agreement()
        logger.info("%d corrected image(s), %d target pixels; agreement with the corrections before: %.1f %%",
                    len(self.session.corrected), self.session.target_pixels, before)
        start = time.perf_counter()
        deadline = start + cfg.seconds if cfg.seconds > 0 else math.inf
        step, logged, window_start, stopped_early = 0, 0, start, False
        self.model.train()
        while step < cfg.steps:
            time_share = (time.perf_counter() - start) / cfg.seconds if cfg.seconds > 0 else 0.0
            lr = self._learning_rate(max(step / cfg.steps, time_share))
            losses = self._step(lr)
            step += 1
            now = time.perf_counter()
            ending = stop.requested() or now >= deadline
            if step == 1 or step % cfg.log_every == 0 or step == cfg.steps or ending:
                self._log({"kind": "train", "epoch": 0, "step": step, "lr": lr,
                           "images_per_s": (step - logged) * cfg.batch_size / max(now - window_start, 1e-9),
                           "time": now - start, **losses})
                logged, window_start = step, now
            if ending:
                stopped_early = step < cfg.steps
                break
        seconds = time.perf_counter() - start
        if self.average is not None:
            self.average.copy_to_params()
        after = self.corrected_agreement()
        self._log({"kind": "eval", "epoch": 0, "step": step, "corrected_agreement": after,
                   "corrected_agreement_before": before})
        return self._save(step, seconds, stopped_early, before, after)

    # ----- output -----------------------------------------------------------------------------------------------
    def _config_record(self) -> dict[str, Any]:
        return {"command": "refine", "project": str(self.session.project.project_dir),
                "checkpoint": str(self.session.checkpoint), "device": str(self.device), "name": self.name,
                "max_steps": self.cfg.steps, "epochs": 0, **self.cfg.to_dict()}

    def _save(self, steps: int, seconds: float, stopped_early: bool, before: float, after: float) -> RefineResult:
        session, parts = self.session, self.session.project.parts
        provenance = {
            "refined_from": str(session.checkpoint), "project": str(session.project.project_dir),
            "corrected_images": len(session.corrected),
            "reviewed_images": sum(c.reviewed for c in session.corrected),
            "target_pixels": session.target_pixels, "images": len(self.pool), "steps": steps,
            "seconds": round(seconds, 1), "supervised_weight": self.cfg.supervised_weight,
            "reconstruction": self.cfg.reconstruction, "corrected_agreement": round(after, 2),
            "created": datetime.now().isoformat(timespec="seconds"),
            LINEAGE_KEY: session.lineage,  # the project knows the new model's slots are the ones it named
        }
        parent = session.model.info
        self.model.info = ModelInfo([parts[k].name for k in range(parts.num_parts)],
                                    [parts[k].color for k in range(parts.num_parts)],
                                    {"parent_provenance": parent.provenance, **provenance}, parent.source,
                                    parent.source_format)
        try:  # the backbone travels with the model when it did in the parent (a seeded random one exists nowhere else)
            embed = checkpoint_metadata(session.checkpoint).get("backbone_embedded") == "1"
        except CheckpointError:  # the authors' .pth: the backbone is referenced by name, as `convert` does by default
            embed = False
        self.model.eval()
        run_checkpoint = save_checkpoint(self.model, self.out / "refined.safetensors", embed_backbone=embed)
        target = new_model_path(session.project.models_dir, self.name)
        with run_checkpoint.open("rb") as source:  # the same bytes, atomically: the app may list the folder now
            atomic_write(target, lambda f: shutil.copyfileobj(source, f, 2**20))
        summary = {"checkpoint": str(target), "run_checkpoint": str(run_checkpoint),
                   "fingerprint": model_fingerprint(self.model), "stopped_early": stopped_early,
                   "agreement_before": before, "agreement_after": after, "skipped_images": self.skipped,
                   "features_encoded": self.cache.encoded, "features_read_from_disk": self.cache.read_from_disk,
                   **provenance}
        atomic_write_json(self.out / "result.json", summary, fsync=False)
        return RefineResult(target, run_checkpoint, steps, seconds, stopped_early, before, after, summary)
