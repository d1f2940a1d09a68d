"""`objmm`: a LightningCLI for fitting and validating dynamics models (`objmm fit --config ...`).

Bad input ends with one line, `objmm: error: ...`, and exit status 2.
"""

from __future__ import annotations

import os
import sys

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from objmm.errors import ObjmmError
from objmm.training import DynamicsModule, TransitionDataModule
from objmm.training.reward_callback import run_directory


class RunConfigCallback(SaveConfigCallback):
    """Save the run's full config into its run directory and log it to W&B (or any logger)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        path = run_directory(trainer) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=False)
        for logger in trainer.loggers:
            logger.log_hyperparams(self.config.as_dict())


class ObjmmCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.env_id", "model.env_id")
        parser.link_arguments("model.members", "data.ensemble_size")


def wandb_offline_logger() -> dict:
    return {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"project": "objmm", "save_dir": "runs", "offline": True},
    }


def main(args: list[str] | None = None) -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        ObjmmCLI(
            DynamicsModule,
            TransitionDataModule,
            save_config_callback=RunConfigCallback,
            save_config_kwargs={
                "save_to_log_dir": False,
                "overwrite": True,
                "config_filename": "objmm_config.yaml",
            },
            trainer_defaults={"logger": wandb_offline_logger()},
            args=args,
        )
    except ObjmmError as error:
        _finish_wandb(exit_code=2)
        print(f"objmm: error: {error}", file=sys.stderr)
        sys.exit(2)
    _finish_wandb(exit_code=0)


def _finish_wandb(exit_code: int) -> None:
    """Close the W&B run so its offline files are complete when objmm returns (also when called in-process)."""
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)


__all__ = ["ObjmmCLI", "WandbLogger", "main"]
