"""MPAE model and loss configuration.

Defaults reproduce the reference implementation (docs/mpae-reference.md §1, §1.9). Where the paper's text differs
from the code (reference §6), the reference behaviour is the default and the paper's version is a named option:

* ``reconstruction_loss="paper"``: eq. 3, ½·L1 + ½·perceptual on the masked patches only.
* ``semantic_loss="paper"``: eq. 7 as written (softmax over regions, presence inside the denominator).
* ``entropy_loss="paper"``: eq. 11, (1/(K+1))·Σ_k Σ_ij −P log P per image.
* ``inference_resolution="full"``: probabilities at the input size instead of the reference's 128×128.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

RECONSTRUCTION_VARIANTS = ("reference", "paper")
SEMANTIC_VARIANTS = ("reference", "paper")
ENTROPY_VARIANTS = ("reference", "paper")
INFERENCE_RESOLUTIONS = ("reference", "full")

DEFAULT_BACKBONE = "vit_base_patch14_reg4_dinov2.lvd142m"


@dataclass
class MPAEConfig:
    """Everything needed to build an MPAE model and its training objective."""

    backbone: str = DEFAULT_BACKBONE
    # Extra timm.create_model arguments for the backbone (e.g. {"depth": 4} for a tiny demo/test model).
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    num_parts: int = 16  # K foreground parts; the model has Q = K + 1 slots, background last
    image_size: int = 224  # S; the input is squashed to S×S
    patch_size: int = 14
    descriptor_dim: int = 256  # C
    partformer_depth: int = 6
    partformer_heads: int = 8
    partformer_mlp_ratio: float = 4.0
    restoration_encoder_depth: int = 2
    restoration_decoder_depth: int = 2
    restoration_heads: int = 4
    restoration_mlp_ratio: float = 4.0
    restoration_output_patch: int = 8  # each 14-px input patch is restored as an 8-px output patch
    mask_ratio: float = 0.9
    group_size: int = 8  # mini-group size G of the foreground presence loss
    presence_weight: float = 1.0  # λp (L_f + L_b)
    semantic_weight: float = 0.25  # λs
    distribution_weight: float = 0.5  # λd (L_v + L_e)
    arcface_scale: float = 20.0
    arcface_margin: float = 0.5
    l1_weight: float = 0.1
    perceptual_weights: tuple[float, ...] = (5 / 32, 5 / 16, 5 / 8, 5 / 4, 5.0)
    inference_size: int = 128  # reference probability-map resolution
    reconstruction_loss: Literal["reference", "paper"] = "reference"
    semantic_loss: Literal["reference", "paper"] = "reference"
    entropy_loss: Literal["reference", "paper"] = "reference"
    inference_resolution: Literal["reference", "full"] = "reference"
    preset: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        self.perceptual_weights = tuple(float(w) for w in self.perceptual_weights)
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def num_slots(self) -> int:
        """Q = K + 1: the K foreground parts, then the background."""
        return self.num_parts + 1

    @property
    def grid_size(self) -> int:
        """h = w = S / patch: side of the feature grid."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def restoration_size(self) -> int:
        """Side of the restored image and of its target (128 at S=224, 256 at S=448)."""
        return self.grid_size * self.restoration_output_patch

    @property
    def num_visible(self) -> int:
        """Tokens kept by random masking: int(N·(1−r)), 25 of 256 at 224, as in the reference."""
        return int(self.num_patches * (1 - self.mask_ratio))

    @property
    def default_output_size(self) -> tuple[int, int]:
        """Probability-map size used for evaluation: 128×128 (reference) or the input size (paper)."""
        side = self.inference_size if self.inference_resolution == "reference" else self.image_size
        return side, side

    # ------------------------------------------------------------------ checks and I/O
    def validate(self) -> None:
        """Raise ValueError with a clear sentence for an impossible configuration."""
        problems = []
        if self.num_parts < 1:
            problems.append(f"num_parts must be at least 1, got {self.num_parts}")
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of the patch size {self.patch_size}")
        if not 0.0 <= self.mask_ratio < 1.0:
            problems.append(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.group_size < 1:
            problems.append(f"group_size must be at least 1, got {self.group_size}")
        if self.descriptor_dim % self.partformer_heads or self.descriptor_dim % self.restoration_heads:
            problems.append("descriptor_dim must be divisible by the number of attention heads")
        if len(self.perceptual_weights) != 5:
            problems.append("perceptual_weights needs one weight per VGG slice (5)")
        for name, allowed in (
            ("reconstruction_loss", RECONSTRUCTION_VARIANTS),
            ("semantic_loss", SEMANTIC_VARIANTS),
            ("entropy_loss", ENTROPY_VARIANTS),
            ("inference_resolution", INFERENCE_RESOLUTIONS),
        ):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if problems:
            raise ValueError("Invalid MPAE configuration: " + "; ".join(problems) + ".")

    def replace(self, **changes: Any) -> "MPAEConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["perceptual_weights"] = list(self.perceptual_weights)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MPAEConfig":
        """Build from a dict, refusing unknown keys so a typo never passes silently."""
        reject_unknown_keys(cls, data, "MPAE configuration")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "MPAEConfig":
        return cls.from_dict(json.loads(text))


def reject_unknown_keys(cls: type, data: dict[str, Any], what: str) -> None:
    """ValueError naming the keys of ``data`` that are not fields of the dataclass ``cls``."""
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"Unknown {what} keys: {', '.join(unknown)}.")


def _preset(name: str, **values: Any) -> MPAEConfig:
    return MPAEConfig(preset=name, **values)


# Reference §1.9: input size, K, mini-group size per benchmark.
PRESETS: dict[str, MPAEConfig] = {
    "celeba": _preset("celeba", image_size=224, num_parts=16, group_size=8),
    "cub": _preset("cub", image_size=448, num_parts=16, group_size=8),
    "partimagenet_ood": _preset("partimagenet_ood", image_size=224, num_parts=50, group_size=64),
    "partimagenet_seg": _preset("partimagenet_seg", image_size=224, num_parts=50, group_size=64),
}


def preset_config(name: str, **overrides: Any) -> MPAEConfig:
    """A copy of a benchmark preset, with any field overridden."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}.") from None
    return base.replace(**overrides)
