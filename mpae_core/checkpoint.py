"""Saving and loading MPAE checkpoints: our ``.safetensors`` format and the authors' released ``.pth`` files.

Our format is one safetensors file (no pickle, so a downloaded checkpoint cannot run code) holding the trainable
weights and the restoration network's fixed tables; its string metadata carries the format name and version, the
JSON config, the part names/colours and training provenance. The backbone is referenced by name and, on request,
embedded under ``backbone.*``; VGG-19 is a training-time loss network and is never stored.

Compact files (format version 2, for shipping a model such as the demo): ``dtype`` stores the floating tensors in
float16/bfloat16, or as int8 (weight-only, symmetric, one float32 scale per output row under ``<name>#int8_scale``
for every matrix and conv kernel, float16 for the rest); ``inference_only`` leaves out the restoration network,
which only training needs. The loader turns everything back into float32 transparently. A model loaded from an
inference-only file predicts normally but refuses to train, and is saved inference-only again.
"""
from __future__ import annotations

import hashlib
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
FORMAT_VERSION = 2  # 2: compact storage (float16/bfloat16/int8) and inference-only files; other files say 1
INT8_SCALE_SUFFIX = "#int8_scale"
TRAINING_ONLY_PREFIXES = ("restoration.",)  # weights that only training needs (the MAE restoration network)
STORAGE_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16", torch.int8: "int8"}
_INT8_MIN_ROWS, _INT8_MIN_NUMEL = 16, 4096  # smaller tensors (norms, biases, tokens, tables) stay float16


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


def is_inference_only(model: MPAE) -> bool:
    """True for a model loaded from an inference-only checkpoint: it predicts, but it cannot be trained."""
    return bool(getattr(model, "inference_only", False))


def _quantize_int8(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (int8 values of the tensor's shape, float32 scale per row of dim 0)."""
    rows = tensor.float().reshape(tensor.shape[0], -1)
    scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    values = torch.round(rows / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return values.reshape(tensor.shape).contiguous(), scale.contiguous()


def _encode_tensors(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors as stored for ``dtype``: float32 unchanged, floats cast, or int8 matrices plus their scales."""
    if dtype == torch.float32:
        return tensors
    out: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if not tensor.is_floating_point():
            out[key] = tensor
        elif dtype != torch.int8:
            out[key] = tensor.to(dtype).contiguous()
        elif tensor.dim() >= 2 and tensor.shape[0] >= _INT8_MIN_ROWS and tensor.numel() >= _INT8_MIN_NUMEL:
            out[key], out[key + INT8_SCALE_SUFFIX] = _quantize_int8(tensor)
        else:
            out[key] = tensor.to(torch.float16).contiguous()
    return out


def _decode_tensors(state: dict[str, torch.Tensor], metadata: Mapping[str, str], path: Path) -> dict[str, torch.Tensor]:
    """Undo ``_encode_tensors``: every floating (or int8-quantised) tensor back in float32."""
    stored = metadata.get("tensor_dtype", "float32")
    if stored not in STORAGE_DTYPES.values():
        raise CheckpointError(
            f"Cannot load '{path}': it stores its weights as {stored!r}, which this version cannot read."
        )
    if stored == "float32":
        return state
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith(INT8_SCALE_SUFFIX):
            continue
        scale = state.get(key + INT8_SCALE_SUFFIX)
        if scale is not None:
            if tensor.dtype != torch.int8 or scale.shape != (tensor.shape[0],):
                raise CheckpointError(
                    f"Cannot load '{path}': its int8 weights {key} are damaged (scale or values do not match)."
                )
            out[key] = (tensor.float().reshape(tensor.shape[0], -1) * scale.float()[:, None]).reshape(tensor.shape)
        else:
            out[key] = tensor.float() if tensor.is_floating_point() else tensor
    return out


def save_checkpoint(
    model: MPAE,
    path: str | os.PathLike,
    *,
    embed_backbone: bool = False,
    provenance: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    inference_only: bool = False,
) -> Path:
    """Write ``model`` in our format, atomically (temp file + rename), and return the path.

    ``dtype`` (float32, float16, bfloat16 or int8) is how the floating weights are stored; ``inference_only`` leaves
    out the restoration network (always so for a model that was itself loaded from an inference-only file). Both
    make a smaller file for shipping a model; only a float32 file with the restoration network can be trained on.
    """
    path = Path(path)
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"Cannot store a checkpoint as {dtype}; choose one of "
                         f"{', '.join('torch.' + name for name in STORAGE_DTYPES.values())}.")
    inference_only = inference_only or is_inference_only(model)
    state = model.state_dict()
    tensors = {
        k: v.detach().to("cpu").contiguous()
        for k, v in state.items()
        if (embed_backbone or not k.startswith("backbone."))
        and not (inference_only and k.startswith(TRAINING_ONLY_PREFIXES))
    }
    tensors = _encode_tensors(tensors, dtype)
    compact = inference_only or dtype != torch.float32
    info = model.info
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION if compact else 1),
        "config": model.cfg.to_json(),
        "parts": json.dumps(
            [{"name": n, "color": color_to_hex(c)} for n, c in zip(info.part_names, info.part_colors)]
        ),
        "provenance": json.dumps({**info.provenance, **(provenance or {})}, default=str),
        "backbone_embedded": "1" if embed_backbone else "0",
    }
    if compact:
        metadata["tensor_dtype"] = STORAGE_DTYPES[dtype]
        metadata["inference_only"] = "1" if inference_only else "0"
    _atomic_save(tensors, metadata, path)
    return path


def _read_metadata(path: Path) -> dict[str, str] | None:
    """Our metadata when ``path`` is a safetensors file, None when it is some other kind of file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of one of our checkpoints (config, parts, provenance, ``backbone_embedded``...), read from the
    header only; a CheckpointError for a missing file or one that is not an MPAE Annotator checkpoint."""
    path = Path(path)
    metadata = _read_metadata(path) if path.is_file() else None
    if metadata is None or metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"'{path}' is not an MPAE Annotator checkpoint (no such file, or no MPAE metadata).")
    return metadata


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


def _load_weights(model: MPAE, state: dict[str, torch.Tensor], path: Path, skip: tuple[str, ...] = ()) -> None:
    """Strict load of everything but the backbone (and ``skip``), with a readable message for wrong keys or shapes."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(("backbone.", *skip))}
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
    state = _decode_tensors(read_state_dict(path), metadata, path)
    backbone_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    model = _build(cfg, backbone_state, backbone_weights, allow_random)
    inference_only = metadata.get("inference_only") == "1"
    _load_weights(model, {k: v for k, v in state.items() if not k.startswith("backbone.")}, path,
                  skip=TRAINING_ONLY_PREFIXES if inference_only else ())
    if inference_only:
        _mark_inference_only(model, path)
    names, colors = _parse_parts(metadata.get("parts", ""), cfg.num_parts, path)
    provenance = json.loads(metadata.get("provenance") or "{}")
    model.info = ModelInfo(names, colors, provenance, str(path), "mpae-safetensors")
    return model


def _inference_only_message(path: Path) -> str:
    return (f"Cannot train from '{path}': it is an inference-only checkpoint, which leaves out the restoration "
            "network that training needs; train from a full checkpoint as the trainer writes it, or start a new run.")


def _mark_inference_only(model: MPAE, path: Path) -> None:
    """Flag the model and make its (never loaded, randomly initialised) restoration network refuse to run."""
    model.inference_only = True

    def refuse(module, args):  # noqa: ARG001
        raise CheckpointError(_inference_only_message(path))

    model.restoration.register_forward_pre_hook(refuse)


def read_training_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All weights of one of our checkpoints in float32, for resuming or fine-tuning: a CheckpointError with one
    sentence for an inference-only file (no restoration network) or a file that is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Cannot train from '{path}': no such file; check the path.")
    metadata = _read_metadata(path)
    if metadata is None or metadata.get("format") != FORMAT_NAME:
        if metadata is None and path.suffix == ".safetensors":
            read_state_dict(path)  # raises the precise "truncated or corrupt" error
        raise CheckpointError(f"Cannot train from '{path}': it is not an MPAE Annotator checkpoint.")
    if metadata.get("inference_only") == "1":
        raise CheckpointError(_inference_only_message(path))
    return _decode_tensors(read_state_dict(path), metadata, path)


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


#: Provenance key of a refined model: fingerprints of the models it descends from, nearest first.
LINEAGE_KEY = "lineage"


def model_fingerprint(model: MPAE) -> str:
    """Who a model's part slots are: a digest of what decides them (backbone name, K, input size, and the stored
    compress conv and PartFormer weights). The same model gives the same fingerprint in either file format and on
    any machine (stored values are hashed, nothing is recomputed); any retraining changes it."""
    digest = hashlib.sha256()
    cfg = model.cfg
    digest.update(json.dumps([cfg.backbone, cfg.num_parts, cfg.image_size]).encode())
    for prefix, module in (("compress.", model.compress), ("partformer.", model.partformer)):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update((prefix + name).encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def model_lineage(model: MPAE) -> list[str]:
    """The fingerprints of the models this one was refined from (empty for a model trained from scratch)."""
    lineage = model.info.provenance.get(LINEAGE_KEY) or []
    return [str(f) for f in lineage] if isinstance(lineage, list) else []
