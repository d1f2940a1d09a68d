"""`objmm fit` (and Lightning's validate / test / predict): one model fitted, its reward measured as it trains.

    objmm fit --config configs/fit/cartpole_pe.yaml
    objmm fit --config configs/fit/cartpole_pe.yaml --ckpt_path runs/objmm/<run id>/checkpoints/last.ckpt

This is LightningCLI's own fit on objmm's shared sections; the reward per epoch comes from an
`EpisodeRewardCallback` in `trainer.callbacks`. A stopped fit goes on from its last checkpoint with
`--ckpt_path`, in the same W&B run and checkpoint folder.
"""

from __future__ import annotations

import os

import lightning as L

from objmm.errors import ObjmmError
from objmm.experiments.framework.config import ObjmmCLI, RunConfigCallback, wandb_offline_logger


class ResumeHint(L.Callback):
    """On Ctrl-C, find where the fit can be resumed from (Lightning then ends it with SystemExit(1))."""

    def __init__(self):
        super().__init__()
        self.message = ""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(
            trainer.checkpoint_callback, "best_model_path", ""
        )
        where = (
            f"resume with the same command and --ckpt_path {checkpoint}"
            if checkpoint
            else "no checkpoint was saved yet (ModelCheckpoint saves one after each epoch)"
        )
        self.message = f"in epoch {trainer.current_epoch}; {where}"


def check_checkpoint(path: str) -> None:
    """A clear line for a checkpoint that is missing or not readable, before anything starts."""
    import torch

    if path in ("last", "best", "hpc", "registry"):  # Lightning's names for checkpoints it finds itself
        return
    if not os.path.isfile(path):
        raise ObjmmError(f"--ckpt_path {path}: no checkpoint there")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ObjmmError(f"--ckpt_path {path} is not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ObjmmError(f"--ckpt_path {path} is not a Lightning checkpoint (no state_dict in it)")


def main(args: list[str], description: str = __doc__.splitlines()[0]) -> None:
    """`args` begin with Lightning's subcommand (`fit`, `validate`, `test`, `predict`)."""
    # checked before LightningCLI, which reads the checkpoint's hyperparameters while parsing
    for i, arg in enumerate(args):
        if arg.startswith("--ckpt_path="):
            check_checkpoint(arg.split("=", 1)[1])
        elif arg == "--ckpt_path" and i + 1 < len(args):
            check_checkpoint(args[i + 1])
    hint = ResumeHint()
    try:
        ObjmmCLI(
            args=args,
            save_config_callback=RunConfigCallback,
            save_config_kwargs={"save_to_log_dir": False, "overwrite": True, "config_filename": "objmm_config.yaml"},
            parser_kwargs={"prog": "objmm", "description": description},
            trainer_defaults={"logger": wandb_offline_logger(), "callbacks": [hint]},
        )
    except SystemExit:
        if hint.message:  # Ctrl-C: say so, and where to resume, with the usual status 130
            raise KeyboardInterrupt(hint.message) from None
        raise
