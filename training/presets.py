"""Training presets: every hyperparameter of the reference recipe per benchmark (docs/mpae-reference.md §1.9, §2).

A preset fills a ``TrainConfig``; any field can be overridden from the command line.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from mpae_core.config import MPAEConfig, preset_config, reject_unknown_keys


@dataclass
class TrainConfig:
    """One training run: the model config plus the optimisation recipe and the data."""

    model: MPAEConfig
    dataset: str  # cub | celeba | partimagenet_ood | partimagenet_seg | folder | synthetic
    data_root: str = ""
    epochs: int = 70
    milestones: tuple[int, ...] = (50, 60)  # MultiStepLR, stepped once per epoch
    gamma: float = 0.2
    lr: float = 5e-4  # Adam, default betas, no weight decay
    batch_size: int = 64
    clip_grad: float = 2.0
    num_workers: int = 8
    seed: int = 0
    amp: str = "off"  # off | bf16 | fp16 (CUDA only; the losses stay fp32)
    log_every: int = 20  # steps between metrics.jsonl lines
    eval_every: int = 1  # epochs between evaluations (0 = never)
    save_every: int = 500  # steps between mid-epoch saves of last.safetensors (0 = only at epoch ends)
    max_steps: int = 0  # stop after this many optimiser steps (0 = run all epochs); for smoke runs
    augment: bool = True
    backbone_weights: str = ""
    vgg_weights: str = ""
    allow_random_weights: bool = False  # random backbone/VGG: tests and the synthetic demo only
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_dict()
        data["milestones"] = list(self.milestones)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
        data["model"] = MPAEConfig.from_dict(data["model"])
        data["milestones"] = tuple(data.get("milestones", ()))
        reject_unknown_keys(cls, data, "training configuration")
        return cls(**data)


def _recipe(model: MPAEConfig, dataset: str, epochs: int, milestones: tuple[int, ...], **kw: Any) -> TrainConfig:
    return TrainConfig(model=model, dataset=dataset, epochs=epochs, milestones=milestones, **kw)


# The synthetic preset trains the demo in minutes on a CPU: a small, 4-block ViT-S backbone with random frozen
# weights from a fixed seed, 112-px input, K = 8; everything else is the reference recipe. LayerScale starts at 1.0
# instead of DINOv2's 1e-5: with random weights, 1e-5 leaves every block an identity and the backbone a bare
# random patch embedding (benchmarks/bench_synthetic_parts.py: NMI/ARI 6.6/17.9 against 1.2-2.3/1.4-6.6 with 1e-5).
SYNTHETIC_MODEL = MPAEConfig(
    backbone="vit_small_patch14_reg4_dinov2", backbone_kwargs={"depth": 4, "init_values": 1.0}, image_size=112,
    num_parts=8,
    group_size=8, preset="synthetic",
)

TRAIN_PRESETS: dict[str, TrainConfig] = {
    "celeba": _recipe(preset_config("celeba"), "celeba", 20, (15, 18)),
    "cub": _recipe(preset_config("cub"), "cub", 100, (80, 90)),
    "partimagenet_ood": _recipe(preset_config("partimagenet_ood"), "partimagenet_ood", 70, (50, 60)),
    "partimagenet_seg": _recipe(preset_config("partimagenet_seg"), "partimagenet_seg", 70, (50, 60)),
    # Any folder of images: the PartImageNet recipe shape (224 px, 70 epochs) with K = 8 and mini-groups of 8.
    "folder": _recipe(MPAEConfig(num_parts=8, group_size=8, preset="folder"), "folder", 70, (50, 60)),
    "synthetic": _recipe(SYNTHETIC_MODEL, "synthetic", 30, (20, 25), batch_size=32, num_workers=2,
                         allow_random_weights=True),
}


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """A copy of a preset with fields overridden; ``model__field`` keys override the model config."""
    try:
        base = TRAIN_PRESETS[name]
    except KeyError:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(sorted(TRAIN_PRESETS))}.") from None
    model_changes = {k[len("model__"):]: v for k, v in overrides.items() if k.startswith("model__")}
    run_changes = {k: v for k, v in overrides.items() if not k.startswith("model__")}
    return dataclasses.replace(base, model=base.model.replace(**model_changes), **run_changes)
