"""Data-loading worker processes leave Ctrl-C and kills to the main process.

A terminal's Ctrl-C, and ``timeout``/job-control kills, signal the whole process group. If DataLoader workers die
of that signal, PyTorch's SIGCHLD handler raises a RuntimeError in the main process while it is still handling its
own KeyboardInterrupt, and the clean stop (save a resumable checkpoint, write the batch report) is lost. Workers
that ignore SIGINT/SIGTERM keep running until the main process shuts the loader down; they still exit on their own
when the main process dies (PyTorch's worker watchdog).
"""
from __future__ import annotations

import signal


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """``worker_init_fn`` for every DataLoader that runs under a stoppable command."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
