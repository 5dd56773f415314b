"""Data-loading worker processes: they leave Ctrl-C and kills to the main process, never outlive it, and their errors
reach the user as one sentence.

A terminal's Ctrl-C, and ``timeout``/job-control kills, signal the whole process group. If DataLoader workers die
of that signal, PyTorch's SIGCHLD handler raises a RuntimeError in the main process while it is still handling its
own KeyboardInterrupt, and the clean stop (save a resumable checkpoint, write the batch report) is lost. Workers
that ignore SIGINT/SIGTERM keep running until the main process shuts the loader down; they still exit on their own
when the main process dies (PyTorch's worker watchdog).

The price of ignoring SIGTERM: at interpreter exit, ``multiprocessing`` stops leftover daemon processes with SIGTERM
and then waits for them, forever for these workers. A loader whose iterator is still alive then (kept by the
traceback of an uncaught exception, which Python keeps in ``sys.last_traceback``) hung the command after its
traceback. So every loader is iterated through :func:`worker_batches`, which shuts its workers down when the loop
ends in any way, and once more, at exit, before ``multiprocessing`` would wait for them.
"""
from __future__ import annotations

import atexit
import signal
import threading
import weakref
from typing import Iterable, Iterator, TypeVar

from .errors import MPAEError

T = TypeVar("T")

#: how PyTorch re-raises an exception of a worker process: its type and message after the worker's traceback
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"
_OWN_PACKAGES = ("mpae_core.", "training.", "app.")


class DataWorkerError(MPAEError):
    """A data-loading worker process failed; the message is one sentence naming the file when one is known."""


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """``worker_init_fn`` for every DataLoader that runs under a stoppable command."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def worker_error_sentence(exc: BaseException) -> str | None:
    """One sentence for an exception a DataLoader raised because of its workers; None for any other exception.

    The project's own errors (a dataset entry, an unreadable image) already are one sentence naming the file and
    are returned as they are; anything else is named with its type.
    """
    text = str(exc).strip()
    if _WORKER_TRACEBACK not in text:
        if isinstance(exc, RuntimeError) and text.startswith("DataLoader worker"):  # killed, e.g. out of memory
            return (f"A data-loading worker process died ({text.splitlines()[0].rstrip('. ')}); use fewer "
                    "--workers or a smaller --batch-size if memory ran out.")
        return None
    tail: list[str] = []
    for line in reversed(text.splitlines()):  # the exception's lines follow the last indented traceback line
        if not line.strip() or line.startswith((" ", "\t")) or line.startswith(_WORKER_TRACEBACK):
            break
        tail.append(line.strip())
    kind, _, message = " ".join(reversed(tail)).partition(": ")
    if kind.startswith(_OWN_PACKAGES) and message:
        return message
    return (f"A data-loading worker process failed ({kind}: {message or 'no message'}); run with --workers 0 for "
            "the full traceback.")


def worker_batches(loader: Iterable[T]) -> Iterator[T]:
    """The batches of ``loader`` (a DataLoader); its worker processes are shut down when the loop ends, however it
    ends, and an error in a worker is raised as :class:`DataWorkerError` (one sentence).

    Close the generator (or let it be collected) to shut the workers down early, e.g. after a ``break``.
    """
    iterator = iter(loader)
    _track(iterator)
    try:
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - PyTorch re-raises a worker's error as any type
                sentence = worker_error_sentence(exc)
                if sentence is None:
                    raise
                raise DataWorkerError(sentence) from None
            yield batch
    finally:
        _shutdown(iterator)


# ----- shutting workers down -----------------------------------------------------------------------------------------
_live: weakref.WeakSet = weakref.WeakSet()
_lock = threading.Lock()
_exit_hook_registered = False


def _track(iterator: object) -> None:
    """Remember a multi-process iterator for the exit hook, registered after ``multiprocessing``'s own (atexit runs
    the last registered first), so it shuts the workers down before ``multiprocessing`` waits for them."""
    global _exit_hook_registered
    if not hasattr(iterator, "_shutdown_workers"):
        return
    with _lock:
        _live.add(iterator)
        if not _exit_hook_registered:
            atexit.register(_shutdown_all)
            _exit_hook_registered = True


def _shutdown(iterator: object) -> None:
    shutdown = getattr(iterator, "_shutdown_workers", None)  # PyTorch's own clean shutdown of its workers
    if shutdown is not None:
        shutdown()


def _shutdown_all() -> None:
    for iterator in list(_live):
        _shutdown(iterator)
