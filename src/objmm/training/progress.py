"""One printed line now and then while a model trains inside a longer job (a PETS trial, a sweep),
where Lightning's progress bar is off: which epoch, of how many, and its training loss."""

from __future__ import annotations

import lightning as L


class EpochProgress(L.Callback):
    def __init__(self, prefix: str, lines: int = 4):
        """Print about `lines` lines over a fit (and always after the last epoch), each led by `prefix`."""
        super().__init__()
        self.prefix, self.lines = prefix, lines
        self._due: int | None = None

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

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_due(trainer)
