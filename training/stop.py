"""Stopping a run cleanly on Ctrl-C or a kill: the signal asks, the training loop stops at the next safe point.

Raising KeyboardInterrupt straight from a signal handler can land anywhere: inside a DataLoader's queue, a logging
lock or a checkpoint write, which can hang the process or lose the interrupt checkpoint. So the first SIGINT/SIGTERM
only sets a flag; the trainer checks it after every optimisation step (``raise_if_requested``) and then saves a
resumable checkpoint and exits with 130. A second signal stops at once, for a user who does not want to wait.
"""
from __future__ import annotations

import logging
import signal
import threading

logger = logging.getLogger(__name__)

_requested = threading.Event()


def _handler(signum: int, frame) -> None:  # noqa: ARG001
    if _requested.is_set():
        raise KeyboardInterrupt
    _requested.set()
    logger.warning("Stopping after the current step (%s); send it again to stop at once.",
                   signal.Signals(signum).name)


def install_handlers() -> dict[int, object]:
    """Route SIGINT and SIGTERM through the flag (main thread only, as Python requires); returns the old handlers
    for :func:`restore_handlers`."""
    _requested.clear()
    return {signum: signal.signal(signum, _handler) for signum in (signal.SIGINT, signal.SIGTERM)}


def restore_handlers(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def requested() -> bool:
    """True once a stop was asked for: loops that finish early instead of raising (refinement) poll this."""
    return _requested.is_set()


def raise_if_requested() -> None:
    """Called by the training loop at points where stopping leaves everything consistent."""
    if _requested.is_set():
        raise KeyboardInterrupt
