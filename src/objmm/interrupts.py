"""Ctrl-C that is never lost.

Python raises KeyboardInterrupt wherever the interpreter happens to be when SIGINT arrives. Inside
a weakref callback or a `__del__` (garbage collection of torch or W&B objects, which happens often)
the exception is printed as "Exception ignored in ..." and dropped, and the job runs on: CI once saw
a PETS run ignore its Ctrl-C that way. objmm's handler also remembers the request, and `check()`,
called at safe points (every training and validation batch, every episode step), raises it again.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_requested = False


def _handle_sigint(signum, frame) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed since `handled()` began, even if the first one
    was swallowed."""
    if _requested:
        raise KeyboardInterrupt


@contextmanager
def handled() -> Iterator[None]:
    """Install the remembering handler for the duration of a command (main thread only, as signals are)."""
    global _requested
    _requested = False
    try:
        previous = signal.signal(signal.SIGINT, _handle_sigint)
    except ValueError:  # not the main thread: leave signals to whoever owns them
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False
