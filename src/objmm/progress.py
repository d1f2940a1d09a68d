"""Progress lines of long jobs: one printed line now and then, saying where the job is inside its
unit of work (the epoch of a fit inside a PETS trial, the step of an episode) and the loss or reward
just measured. Lightning's own progress bar covers `objmm fit`."""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning as L
import numpy as np


def episode_progress(prefix: str, lines: int = 4, seconds: float = 60.0) -> Callable[[int, int, np.ndarray], None]:
    """A `collect_episodes` progress hook printing about `lines` lines an episode, and one at least
    every `seconds` between them (a stack of many models' episodes takes minutes a step's quarter),
    each led by `prefix`."""
    last = [time.monotonic()]

    def progress(step: int, steps: int, returns: np.ndarray) -> None:
        now = time.monotonic()
        if (step % max(1, steps // lines) == 0 or now - last[0] >= seconds) and step != steps:
            last[0] = now
            mean = " (mean of the episodes)" if len(returns) > 1 else ""
            print(f"{prefix}step {step}/{steps}, reward so far {float(returns.mean()):.1f}{mean}", flush=True)

    return progress


class EpochProgress(L.Callback):
    def __init__(self, prefix: str, lines: int = 4):
        """Print about `lines` lines over a fit (and always after the last epoch), each led by `prefix`.
        It also clocks the fit's steady rate: `steady_step_seconds`, the seconds per optimiser step
        after the first epoch (None for a fit of one epoch), which PETS runs record."""
        super().__init__()
        self.prefix, self.lines = prefix, lines
        self._due: int | None = None
        self._steady_start: tuple[float, int] | None = None
        self.steady_step_seconds: float | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch, epochs = trainer.current_epoch + 1, trainer.max_epochs
        if epoch % max(1, epochs // self.lines) == 0 or epoch == epochs:
            # the module logs the epoch's loss after the callbacks' hook: print it at the next hook
            self._due = epoch

    def _print_due(self, trainer: L.Trainer) -> None:
        if self._due is None:
            return
        loss = trainer.callback_metrics.get("train/loss")
        shown = f", training loss {float(loss):.3f}" if loss is not None else ""
        print(f"{self.prefix}epoch {self._due}/{trainer.max_epochs}{shown}", flush=True)
        self._due = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_due(trainer)
        if trainer.current_epoch == 1:
            self._steady_start = (time.perf_counter(), trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_due(trainer)
        if self._steady_start is not None and trainer.global_step > self._steady_start[1]:
            start, step = self._steady_start
            self.steady_step_seconds = (time.perf_counter() - start) / (trainer.global_step - step)
