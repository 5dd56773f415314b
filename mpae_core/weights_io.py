"""Reading tensors from weight files without ever unpickling code.

``.safetensors`` is read with safetensors; anything else goes through ``torch.load(weights_only=True)``, which
refuses pickled objects other than tensors and plain containers.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import CheckpointError


def read_state_dict(
    path: str | os.PathLike, *, what: str = "checkpoint", error: type[Exception] = CheckpointError
) -> dict[str, torch.Tensor]:
    """All tensors of a weight file, on the CPU; ``error`` with one clear sentence when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise error(f"Cannot open {what} '{path}': no such file; check the path.")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise error(
                f"Cannot read {what} '{path}': the safetensors file is truncated or corrupt ({_brief(exc)}); "
                "download or export it again."
            ) from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise error(
                f"Cannot read {what} '{path}': it contains Python objects other than tensors, which are refused "
                "for safety; re-save it as a plain state_dict."
            ) from exc
        raise error(f"Cannot read {what} '{path}': the file is corrupt ({_brief(exc)}); download it again.") from exc
    except Exception as exc:  # torch.load raises many types for bytes that are not a checkpoint
        raise error(
            f"Cannot read {what} '{path}': the file is truncated or not a PyTorch/safetensors checkpoint "
            f"({_brief(exc)}); download it again."
        ) from exc
    for key in ("state_dict", "model"):  # common wrappers around a state_dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise error(f"Cannot read {what} '{path}': it does not hold a state_dict of tensors.")
    return state


def _brief(exc: BaseException, limit: int = 90) -> str:
    """The first sentence of a library's error message, short enough to sit inside ours."""
    text = str(exc).strip().split(". ")[0].split("\n")[0].rstrip(".") or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
