"""A bare Lightning Trainer for fitting inside another loop (PETS's trials, the benchmarks)."""

from __future__ import annotations

import logging

import lightning as L


def bare_trainer(max_epochs: int, device: str = "cpu", callbacks: list[L.Callback] | None = None) -> L.Trainer:
    """No logger, checkpoints, progress bar, model summary or validation; Lightning's info lines off."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="gpu" if device.startswith("cuda") else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
