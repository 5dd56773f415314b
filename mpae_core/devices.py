"""Choosing and describing the compute device."""
from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must exist."""
    if isinstance(device, torch.device):
        return device
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(name)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {device!r} was requested but CUDA is not available here; use 'cpu' or 'auto'.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"Device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"Device {device!r} was requested but Apple MPS is not available here; use 'cpu' or 'auto'.")
    return resolved


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for inference on ``device``, or None for plain fp32.

    ``auto`` is fp16 on CUDA: its 10-bit mantissa keeps the reference's argmax on ≥ 99.9 % of pixels where bf16's
    7 bits do not (benchmarks/check_cuda_precision.py); the matching and upsampling always run in fp32. CPU and
    MPS run fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.float16
