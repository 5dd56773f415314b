"""The MPAE training loop, as the reference trains (docs/mpae-reference.md §2).

Adam (lr 5e-4, no weight decay) over the trainable modules, MultiStepLR ×0.2 stepped per epoch, gradient clipping
at 2.0, fp32 unless ``amp`` asks for bf16/fp16 autocast on CUDA (the losses always run in fp32). The run folder holds
``config.json``, ``metrics.jsonl`` (one line per logged step, see :func:`should_log`, and per evaluation),
``checkpoints/last.safetensors`` and ``best.safetensors`` (our checkpoint format, written atomically) and
``checkpoints/last_state.pt`` (optimizer, scheduler, position and RNG, for ``--resume``). A stop at any point
(Ctrl-C, a kill between two saves) leaves a resumable run; a non-finite loss stops with a clear message and keeps
the last good checkpoint.

Under ``torchrun`` every process trains on its own shard with DistributedDataParallel (NCCL on GPUs, gloo on the
CPU) and only rank 0 writes the run folder. ``batch_size`` is per process: the presence loss's mini-groups are
formed within each process's batch, as in the reference's single-GPU runs.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mpae_core.backbone import resolve_backbone
from mpae_core.checkpoint import read_training_weights, save_checkpoint
from mpae_core.worker_signals import ignore_stop_signals, worker_batches
from mpae_core.devices import resolve_device
from mpae_core.errors import MPAEError
from mpae_core.model import MPAE
from mpae_core.perceptual import resolve_perceptual_network

from . import stop
from .presets import TrainConfig
from .sampler import EpochSampler

logger = logging.getLogger(__name__)

EvaluateFn = Callable[[MPAE], dict[str, float]]
SELECTION_METRIC = "nmi"  # the reference keeps the checkpoint with the best test NMI (reference §2)


class TrainingDiverged(MPAEError):
    """A loss became NaN or infinite."""


@dataclass
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def last(self) -> Path:
        return self.root / "checkpoints" / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best.safetensors"

    @property
    def state(self) -> Path:
        return self.root / "checkpoints" / "last_state.pt"


@dataclass
class Position:
    epoch: int = 0
    step_in_epoch: int = 0  # batches of this epoch already trained
    global_step: int = 0
    best_metric: float = -math.inf


class _TrainingForward(nn.Module):
    """Gives DistributedDataParallel a ``forward`` that returns the training losses."""

    def __init__(self, model: MPAE, perceptual: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.perceptual = perceptual

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.training_losses(images, self.perceptual).losses


def should_log(step: int, log_every: int) -> bool:
    """Log every ``log_every`` steps, and before the first of those at steps 1, 2, 4, 8, ..., so a live plot has
    points within seconds of the start instead of after ``log_every`` steps (minutes on a CPU)."""
    return step % max(log_every, 1) == 0 or (step < log_every and step & (step - 1) == 0)


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _atomic_torch_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Trainer:
    def __init__(self, cfg: TrainConfig, dataset: Dataset, run_dir: str | os.PathLike, *,
                 device: str = "auto", evaluate: EvaluateFn | None = None, resume: bool = False,
                 show_progress: bool = True) -> None:
        self.cfg = cfg
        self.paths = RunPaths(Path(run_dir))
        self.rank, self.world_size, local_rank = distributed_context()
        self.distributed = self.world_size > 1
        self.device = self._setup_device(device, local_rank)
        self.is_main = self.rank == 0
        self.evaluate = evaluate
        self.show_progress = show_progress and self.is_main
        torch.manual_seed(cfg.seed)  # identical initial (and, if random, frozen) weights in every process
        backbone = resolve_backbone(
            cfg.model.backbone, cfg.model.image_size, weights_path=cfg.backbone_weights or None,
            allow_random=cfg.allow_random_weights, **cfg.model.backbone_kwargs,
        )
        self.model = MPAE(cfg.model, backbone).to(self.device)
        self.perceptual = resolve_perceptual_network(
            cfg.vgg_weights or None, allow_random=cfg.allow_random_weights
        ).to(self.device)
        self.forward_module: nn.Module = _TrainingForward(self.model, self.perceptual)
        if self.distributed:
            self.forward_module = nn.parallel.DistributedDataParallel(
                self.forward_module, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.optimizer = torch.optim.Adam(self.model.trainable_parameters(), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(cfg.milestones), gamma=cfg.gamma)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16" and self.device.type == "cuda")
        self.sampler = EpochSampler(len(dataset), seed=cfg.seed, rank=self.rank, world_size=self.world_size)
        self.loader = DataLoader(
            dataset, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda", drop_last=False, persistent_workers=False,
            worker_init_fn=ignore_stop_signals,
        )
        torch.manual_seed(cfg.seed + 1 + self.rank)  # each process masks its own patches
        self.position = Position()
        if resume:
            self._resume()
        elif self.is_main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            self.paths.config.write_text(cfg.to_json())

    # ------------------------------------------------------------------ setup
    def _setup_device(self, device: str, local_rank: int) -> torch.device:
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
            dist.init_process_group(backend)
        resolved = resolve_device(device)
        if resolved.type == "cuda":
            if self.distributed:
                resolved = torch.device("cuda", local_rank)
            torch.cuda.set_device(resolved)
            torch.backends.cudnn.benchmark = True
        return resolved

    def _resume(self) -> None:
        if not self.paths.state.is_file() or not self.paths.last.is_file():
            raise MPAEError(
                f"Cannot resume from '{self.paths.root}': it has no checkpoints/last.safetensors and "
                "last_state.pt; start a new run without --resume."
            )
        weights = read_training_weights(self.paths.last)
        own = {k for k in self.model.state_dict() if not k.startswith("backbone.")}
        self.model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
        state = torch.load(self.paths.state, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.position = Position(**state["position"])
        torch.set_rng_state(state["rng_cpu"])
        logger.info("Resuming %s at epoch %d, step %d", self.paths.root, self.position.epoch,
                    self.position.global_step)

    # ------------------------------------------------------------------ saving
    def _save_last(self) -> None:
        if not self.is_main:
            return
        provenance = {"epoch": self.position.epoch, "global_step": self.position.global_step,
                      "dataset": self.cfg.dataset, "run": str(self.paths.root)}
        embed = self.cfg.allow_random_weights  # a seeded random backbone exists nowhere else
        save_checkpoint(self.model, self.paths.last, embed_backbone=embed, provenance=provenance)
        _atomic_torch_save({
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "position": vars(self.position).copy(),
            "rng_cpu": torch.get_rng_state(),
        }, self.paths.state)

    def _log(self, record: dict) -> None:
        if self.is_main:
            with self.paths.metrics.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ loop
    def train(self) -> Position:
        """Run the remaining epochs; returns where training stopped."""
        try:
            while self.position.epoch < self.cfg.epochs and not self._step_budget_spent():
                self._train_epoch()
                if self._step_budget_spent() and self.position.step_in_epoch:
                    self._save_last()  # stopped by --max-steps inside an epoch: still resumable
                    break
                self._end_epoch()
                stop.raise_if_requested()
        except KeyboardInterrupt:
            logger.warning("Interrupted: saving a resumable checkpoint in %s", self.paths.root)
            self._save_last()
            raise
        finally:
            if self.distributed and dist.is_initialized():
                dist.destroy_process_group()
        return self.position

    def _step_budget_spent(self) -> bool:
        return 0 < self.cfg.max_steps <= self.position.global_step

    def _train_epoch(self) -> None:
        pos = self.position
        self.sampler.set_epoch(pos.epoch, pos.step_in_epoch * self.cfg.batch_size)
        self.model.train()
        loaded = worker_batches(self.loader)
        batches = loaded
        if self.show_progress:
            from tqdm import tqdm

            batches = tqdm(loaded, desc=f"epoch {pos.epoch + 1}/{self.cfg.epochs}", unit="batch",
                           initial=pos.step_in_epoch, total=pos.step_in_epoch + len(self.loader), dynamic_ncols=True)
        try:
            self._run_batches(batches)
        finally:
            loaded.close()  # the workers stop now, also on an interrupt or an error

    def _run_batches(self, batches) -> None:
        pos = self.position
        window_start, window_images = time.perf_counter(), 0
        for batch in batches:
            images = batch["image"].to(self.device, non_blocking=True)
            losses = self._optimisation_step(images)
            pos.step_in_epoch += 1
            pos.global_step += 1
            window_images += images.shape[0] * self.world_size
            if should_log(pos.global_step, self.cfg.log_every) or self._step_budget_spent():
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                record = {"kind": "train", "epoch": pos.epoch, "step": pos.global_step,
                          "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": window_images / elapsed,
                          **{k: float(v) for k, v in losses.items()}}
                self._log(record)
                if self.show_progress:
                    batches.set_postfix(loss=f"{record['total']:.3f}", ips=f"{record['images_per_s']:.1f}")
                window_start, window_images = time.perf_counter(), 0
            if self.cfg.save_every and pos.global_step % self.cfg.save_every == 0:
                self._save_last()
            if self._step_budget_spent():
                break
            stop.raise_if_requested()

    def _optimisation_step(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.amp)
        with torch.autocast(self.device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None and self.device.type == "cuda"):
            losses = self.forward_module(images)
        total = losses["total"]
        if not torch.isfinite(total):
            terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            raise TrainingDiverged(
                f"Training stopped at step {self.position.global_step + 1}: the loss is not finite ({terms}); "
                f"the last good checkpoint is {self.paths.last}, try a lower --lr or --amp off."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {k: v.detach() for k, v in losses.items()}

    def _end_epoch(self) -> None:
        pos = self.position
        pos.epoch += 1
        pos.step_in_epoch = 0
        self.scheduler.step()
        metrics = None
        if self.evaluate is not None and self.cfg.eval_every and pos.epoch % self.cfg.eval_every == 0:
            if self.is_main:
                self.model.eval()
                metrics = self.evaluate(self.model)
                self._log({"kind": "eval", "epoch": pos.epoch, "step": pos.global_step, **metrics})
        improved = metrics is not None and metrics.get(SELECTION_METRIC, -math.inf) > pos.best_metric
        if improved:
            pos.best_metric = metrics[SELECTION_METRIC]
        self._save_last()
        if improved and self.is_main:
            save_checkpoint(self.model, self.paths.best, embed_backbone=self.cfg.allow_random_weights,
                            provenance={"epoch": pos.epoch, "selected_on": SELECTION_METRIC, **metrics})

