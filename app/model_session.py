"""The model the app has loaded: which checkpoint, on which device, how much memory it holds, and freeing it.

Qt-free so the window, the workers and the tests share one place that knows about devices. Loading happens on a
worker thread; everything else is cheap and safe to call from the GUI thread.
"""
from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mpae_core.checkpoint import load_checkpoint, model_fingerprint, model_lineage
from mpae_core.devices import resolve_device
from mpae_core.inference import Predictor
from mpae_core.model import MPAE

logger = logging.getLogger(__name__)


def available_devices() -> list[tuple[str, str]]:
    """(device string, label) pairs for the device menu: auto, each CUDA GPU by name, Apple MPS, CPU."""
    devices = [("auto", "Auto (best available)")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append((f"cuda:{index}", f"GPU {index}: {props.name} ({props.total_memory / 2**30:.0f} GiB)"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(("mps", "Apple GPU (MPS)"))
    devices.append(("cpu", "CPU"))
    return devices


@dataclass
class LoadRequest:
    checkpoint: Path
    device: str = "auto"
    backbone_weights: Path | None = None
    allow_random_backbone: bool = False  # tests and explicitly random checkpoints only


@dataclass(frozen=True)
class ModelIdentity:
    """Who a model's part slots are: its fingerprint and the fingerprints it was refined from (a project's part
    table names the slots of one model family; see ``AnnotationProject.model_fit``)."""

    fingerprint: str
    lineage: tuple[str, ...] = ()

    @classmethod
    def of(cls, model: MPAE) -> "ModelIdentity":
        """Hash the part-defining weights (tens of milliseconds for a full model: call it off the GUI thread)."""
        return cls(model_fingerprint(model), tuple(model_lineage(model)))


class ModelSession:
    """Holds one loaded model + Predictor; ``unload`` gives its (GPU) memory back."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.checkpoint: Path | None = None
        self.device: torch.device | None = None
        self.identity: ModelIdentity | None = None

    @property
    def loaded(self) -> bool:
        return self.predictor is not None

    @property
    def model(self) -> MPAE | None:
        return None if self.predictor is None else self.predictor.model

    @property
    def num_parts(self) -> int | None:
        return None if self.predictor is None else self.predictor.model.cfg.num_parts

    @staticmethod
    def build(request: LoadRequest) -> Predictor:
        """Load the checkpoint and place it on the device (slow: call it off the GUI thread)."""
        device = resolve_device(request.device)
        if device.type == "cpu":  # leave one core to the GUI thread so the window stays smooth during a batch
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        model = load_checkpoint(request.checkpoint, backbone_weights=request.backbone_weights,
                                allow_random_backbone=request.allow_random_backbone)
        return Predictor(model, device)

    @property
    def name(self) -> str:
        """The checkpoint's file name, for messages."""
        return "" if self.checkpoint is None else self.checkpoint.name

    def attach(self, predictor: Predictor, checkpoint: Path, identity: ModelIdentity | None = None) -> None:
        """Take a freshly built predictor (and its identity, computed on the loader thread); the previous model is
        freed first."""
        self.unload()
        self.predictor, self.checkpoint, self.device = predictor, Path(checkpoint), predictor.device
        self.identity = identity if identity is not None else ModelIdentity.of(predictor.model)

    def unload(self) -> None:
        """Drop the model and return cached GPU memory to the driver (closing or switching models)."""
        if self.predictor is None:
            return
        device = self.device
        self.predictor = None
        self.checkpoint = None
        self.device = None
        self.identity = None
        gc.collect()
        if device is not None and device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
        logger.info("Model unloaded from %s", device)

    def describe(self) -> str:
        """Status-bar text: device and the memory the model holds there."""
        if self.predictor is None or self.device is None:
            return "No model loaded"
        name = os.path.basename(str(self.checkpoint))
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            used = torch.cuda.memory_allocated(index) / 2**20
            reserved = torch.cuda.memory_reserved(index) / 2**20
            return f"{name} · {torch.cuda.get_device_name(index)} · {used:.0f} MiB in use ({reserved:.0f} reserved)"
        params = sum(p.numel() * p.element_size() for p in self.predictor.model.parameters()) / 2**20
        return f"{name} · {self.device.type.upper()} · model {params:.0f} MiB"
