"""Trainers for fitting inside another loop (PETS's trials, the benchmarks): no logger,
checkpoints, progress bar, model summary or validation, and Lightning's info lines off."""

from __future__ import annotations

import logging

import lightning as L

#: the Trainer settings of a fit inside a loop; the loop logs and saves what it needs itself
INNER_FIT = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "limit_val_batches": 0,
    "num_sanity_val_steps": 0,
}


def inner_fit(trainer: L.Trainer, module: L.LightningModule, **data) -> None:
    """`trainer.fit(module, **data)` inside a loop: a Ctrl-C, which Lightning turns into SystemExit(1)
    inside fit, comes out as the KeyboardInterrupt the loop's "go on" line answers."""
    try:
        trainer.fit(module, **data)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def quiet_lightning() -> None:
    """Lightning's info lines (devices, tips) off: a loop of fits prints its own progress."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def bare_trainer(
    max_epochs: int, device: str = "cpu", callbacks: list[L.Callback] | None = None, max_steps: int = -1
) -> L.Trainer:
    """A Trainer with the `INNER_FIT` settings, for code that has no config (benchmarks, tests, a
    Ray task); `max_epochs=-1` with `max_steps` fits for a number of steps instead."""
    quiet_lightning()
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    return L.Trainer(
        max_epochs=max_epochs,
        max_steps=max_steps,
        accelerator=accelerator,
        devices=1,
        callbacks=callbacks,
        **INNER_FIT,
    )
