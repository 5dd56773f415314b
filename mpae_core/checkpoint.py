"""Saving and loading MPAE checkpoints: our ``.safetensors`` format and the authors' released ``.pth`` files.

Our format is one safetensors file (no pickle, so a downloaded checkpoint cannot run code) holding the trainable
weights and the restoration network's fixed tables; its string metadata carries the format name and version, the
JSON config, the part names/colours and training provenance. The backbone is referenced by name and, on request,
embedded under ``backbone.*``; VGG-19 is a training-time loss network and is never stored.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .backbone import resolve_backbone
from .config import MPAEConfig
from .devices import resolve_device
from .errors import CheckpointError
from .model import MPAE, ModelInfo
from .official import (
    convert_official_state_dict,
    is_official_state_dict,
    official_config,
    strip_dataparallel_prefix,
)
from .palette import color_to_hex, hex_to_color
from .weights_io import read_state_dict

logger = logging.getLogger(__name__)

FORMAT_NAME = "mpae-annotator-checkpoint"
FORMAT_VERSION = 1


def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    model: MPAE,
    path: str | os.PathLike,
    *,
    embed_backbone: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` in our format, atomically (temp file + rename), and return the path."""
    path = Path(path)
    state = model.state_dict()
    tensors = {
        k: v.detach().to("cpu").contiguous()
        for k, v in state.items()
        if embed_backbone or not k.startswith("backbone.")
    }
    info = model.info
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": model.cfg.to_json(),
        "parts": json.dumps(
            [{"name": n, "color": color_to_hex(c)} for n, c in zip(info.part_names, info.part_colors)]
        ),
        "provenance": json.dumps({**info.provenance, **(provenance or {})}, default=str),
        "backbone_embedded": "1" if embed_backbone else "0",
    }
    _atomic_save(tensors, metadata, path)
    return path


def _read_metadata(path: Path) -> dict[str, str] | None:
    """Our metadata when ``path`` is a safetensors file, None when it is some other kind of file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None


def _parse_parts(raw: str, num_parts: int, path: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    default = ModelInfo.default(num_parts)
    if not raw:
        return default.part_names, default.part_colors
    try:
        parts = json.loads(raw)
        names = [str(p["name"]) for p in parts]
        colors = [hex_to_color(p["color"]) for p in parts]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"Cannot load '{path}': its part table is damaged ({exc}).") from exc
    if len(names) != num_parts:
        raise CheckpointError(f"Cannot load '{path}': it names {len(names)} parts but the model has {num_parts}.")
    return names, colors


def _load_weights(model: MPAE, state: dict[str, torch.Tensor], path: Path) -> None:
    """Strict load of everything but the backbone, with a readable message for wrong keys or shapes."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k} is {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part for part in (
                f"missing {', '.join(missing[:3])}" + (" …" if len(missing) > 3 else "") if missing else "",
                f"unexpected {', '.join(unexpected[:3])}" + (" …" if len(unexpected) > 3 else "") if unexpected else "",
                "; ".join(wrong[:3]),
            ) if part
        )
        raise CheckpointError(
            f"Cannot load '{path}': its weights do not match the model its config describes ({details})."
        )
    model.load_state_dict({k: state[k] for k in own}, strict=False)


def _build(cfg: MPAEConfig, backbone_state: dict | None, backbone_weights, allow_random: bool) -> MPAE:
    backbone = resolve_backbone(
        cfg.backbone, cfg.image_size, state_dict=backbone_state or None, weights_path=backbone_weights,
        allow_random=allow_random, **cfg.backbone_kwargs,
    )
    return MPAE(cfg, backbone)


def _load_ours(path: Path, metadata: dict[str, str], backbone_weights, allow_random: bool) -> MPAE:
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"Cannot load '{path}': it is a safetensors file but not an MPAE checkpoint "
            "(no MPAE metadata); use a checkpoint written by MPAE Annotator or the authors' .pth."
        )
    try:
        version = int(metadata.get("format_version", "0"))
    except ValueError:
        version = -1
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"Cannot load '{path}': it was written in checkpoint format {version} by a newer MPAE Annotator; "
            f"this version reads up to format {FORMAT_VERSION}, so update MPAE Annotator."
        )
    if version < 1:
        raise CheckpointError(f"Cannot load '{path}': its format version {metadata.get('format_version')!r} is invalid.")
    try:
        cfg = MPAEConfig.from_json(metadata["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"Cannot load '{path}': its model configuration is missing or invalid ({exc}).") from exc
    state = read_state_dict(path)
    backbone_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    model = _build(cfg, backbone_state, backbone_weights, allow_random)
    _load_weights(model, {k: v for k, v in state.items() if not k.startswith("backbone.")}, path)
    names, colors = _parse_parts(metadata.get("parts", ""), cfg.num_parts, path)
    provenance = json.loads(metadata.get("provenance") or "{}")
    model.info = ModelInfo(names, colors, provenance, str(path), "mpae-safetensors")
    return model


def _load_official(path: Path, backbone_weights, allow_random: bool) -> MPAE:
    state = strip_dataparallel_prefix(read_state_dict(path))
    if not is_official_state_dict(state):
        raise CheckpointError(
            f"Cannot load '{path}': it is a PyTorch file but neither an MPAE Annotator checkpoint nor one of the "
            "authors' released MPAE checkpoints (no Transformer.* / compress_layer weights)."
        )
    cfg = official_config(state, str(path))
    ours, backbone_state = convert_official_state_dict(state)
    model = _build(cfg, backbone_state, backbone_weights, allow_random)
    _load_weights(model, ours, path)
    model.info = ModelInfo.default(cfg.num_parts)
    model.info.source, model.info.source_format = str(path), "official-pth"
    model.info.provenance = {"converted_from": path.name, "origin": "MPAE authors' release (Jiahao-UTS/MPAE)"}
    return model


def load_checkpoint(
    path: str | os.PathLike,
    *,
    backbone_weights: str | os.PathLike | None = None,
    allow_random_backbone: bool = False,
    device: str | torch.device = "cpu",
) -> MPAE:
    """A ready model in eval mode, on ``device`` ("auto", "cpu", "cuda:1", ...), from our ``.safetensors`` or the
    authors' ``.pth``.

    Backbone weights: embedded in the file → ``backbone_weights`` / ``MPAE_BACKBONE_WEIGHTS`` → timm's cache;
    random only with ``allow_random_backbone=True``. Every failure is a CheckpointError or BackboneWeightsError
    with one sentence naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Cannot load checkpoint '{path}': no such file; check the path.")
    metadata = _read_metadata(path)
    if metadata is not None:
        model = _load_ours(path, metadata, backbone_weights, allow_random_backbone)
    elif path.suffix == ".safetensors":
        read_state_dict(path)  # raises the precise "truncated or corrupt" error
        raise CheckpointError(f"Cannot load '{path}': the safetensors header is unreadable.")
    else:
        model = _load_official(path, backbone_weights, allow_random_backbone)
    logger.info("Loaded %s (%s, K=%d, S=%d)", path, model.info.source_format, model.cfg.num_parts,
                model.cfg.image_size)
    return model.to(resolve_device(device)).eval()
