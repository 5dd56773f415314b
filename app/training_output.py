"""What a training run writes and prints, read for the Train dialog: metrics lines, checkpoints, output lines.

Qt-free helpers (the dialog never imports ``training``; it only reads the run folder and the process output).
"""
from __future__ import annotations

import codecs
import json
import logging
import math
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger(__name__)

LAST_STATE = Path("checkpoints") / "last.safetensors"
BEST_STATE = Path("checkpoints") / "best.safetensors"
#: Keys of a metrics record that are bookkeeping, not loss terms or scores to plot.
NON_LOSS_KEYS = frozenset({"kind", "epoch", "step", "lr", "images_per_s", "time"})


# ----- reading the run folder ----------------------------------------------------------------------------------------
def read_new_records(path: str | os.PathLike, offset: int) -> tuple[list[dict[str, Any]], int]:
    """JSON objects of the complete lines of ``path`` after byte ``offset``, and the offset to read from next.

    The trainer appends while we read, so a last line without its newline is left for the next call; malformed
    lines are skipped (logged) rather than stopping the plot. A file shorter than ``offset`` was replaced, so it is
    read again from the start; a missing file yields nothing.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size < offset:
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        logger.warning("Cannot read the training metrics '%s': %s", path, exc)
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    records = []
    for line in data[: end + 1].splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            logger.debug("Skipping a malformed line of %s: %r", path, line[:200])
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, offset + end + 1


def loss_terms(record: dict[str, Any]) -> dict[str, float]:
    """The plottable values of a metrics record (loss terms of a train record, scores of an eval record)."""
    return {key: value for key, value in record.items()
            if key not in NON_LOSS_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)}


def run_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint a finished run offers: best (selected on test NMI) if there is one, else last."""
    for rel in (BEST_STATE, LAST_STATE):
        path = Path(run_dir) / rel
        if path.is_file():
            return path
    return None


def format_command(command: Sequence[str]) -> str:
    """The command as the user's shell would want it typed."""
    return subprocess.list2cmdline(list(command)) if os.name == "nt" else shlex.join(command)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class LineSplitter:
    """Turns a process's byte chunks into complete lines, treating text ended by a carriage return (tqdm's
    progress bar) as a transient line that replaces itself instead of filling the log."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self.transient = ""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += self._decoder.decode(data)
        lines: list[str] = []
        while True:
            cut = min((i for i in (self._buffer.find("\n"), self._buffer.find("\r")) if i >= 0), default=-1)
            if cut < 0:
                break
            piece, sep = self._buffer[:cut], self._buffer[cut]
            if sep == "\r" and self._buffer[cut + 1 : cut + 2] == "\n":
                sep, cut = "\n", cut + 1
            self._buffer = self._buffer[cut + 1 :]
            if sep == "\n":
                lines.append(piece)
            elif piece.strip():
                self.transient = piece.strip()
        if self._buffer.strip():
            self.transient = self._buffer.strip()
        return lines

    def flush(self) -> list[str]:
        rest = self._buffer + self._decoder.decode(b"", final=True)
        self._buffer = ""
        return [rest] if rest.strip() else []


def progress_summary(record: dict[str, Any], run_config: dict[str, Any], steps_per_epoch: float | None, *,
                     running: bool) -> tuple[float, str]:
    """(fraction done, one line: epoch, step, speed, time left, loss) from the last train record of a run; a run
    with ``max_steps`` and no epochs (refinement) is described in steps alone."""
    step, epoch = int(record.get("step", 0)), int(record.get("epoch", 0))
    epochs = int(run_config.get("epochs") or 0)
    max_steps = int(run_config.get("max_steps") or 0)
    total = None
    if max_steps > 0:
        total = max_steps
    elif steps_per_epoch and epochs:
        total = steps_per_epoch * epochs
    parts = [f"epoch {epoch + 1}/{epochs}" if epochs else f"epoch {epoch + 1}"]
    if not epochs and max_steps > 0:
        parts = []  # a run counted in steps only (refinement): no epochs to speak of
    parts.append(f"step {step}/{int(total)}" if total else f"step {step}")
    ips = record.get("images_per_s")
    if isinstance(ips, (int, float)) and ips > 0:
        parts.append(f"{ips:.1f} images/s")
        if total and run_config.get("batch_size") and step < total and running:
            parts.append(f"about {format_duration((total - step) * run_config['batch_size'] / ips)} left")
    loss = record.get("total")
    if isinstance(loss, (int, float)) and math.isfinite(loss):
        parts.append(f"loss {loss:.4g}")
    fraction = step / total if total else (epoch / epochs if epochs else 0.0)
    return fraction, " · ".join(parts)
