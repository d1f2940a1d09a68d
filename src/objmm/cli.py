"""`objmm`: a LightningCLI for fitting and validating dynamics models (`objmm fit --config ...`).

Bad input ends with one line, `objmm: error: ...`, and exit status 2.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from objmm import atomic
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


def pets_main(argv: list[str]) -> None:
    """`objmm pets --config X` / `objmm pets --resume RUN_DIR`."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from objmm.pets import CONFIG_FILE, check_run_dir, pets

    parser = ArgumentParser(prog="objmm pets", description=pets.__doc__.splitlines()[0])
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(pets, skip={"resume"})
    parser.add_argument("--resume", type=str | None, default=None, help="a pets run directory to go on with")
    cfg = parser.parse_args(argv)
    resume_dir = cfg.pop("resume")
    if resume_dir:
        # the saved config, with any setting given beside --resume on top (e.g. --trials 20 to go further)
        check_run_dir(Path(resume_dir))
        overrides = [a for i, a in enumerate(argv) if a != "--resume" and (i == 0 or argv[i - 1] != "--resume")]
        cfg = parser.parse_args(["--config", str(Path(resume_dir) / CONFIG_FILE), *overrides])
        cfg.pop("resume")
        cfg.run_dir = resume_dir
    else:
        run_dir = Path(cfg.run_dir)
        if (run_dir / CONFIG_FILE).exists():
            raise ObjmmError(f"{run_dir} already holds a pets run; use --resume {run_dir} or another --run_dir")
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.pop("config", None)
    atomic.write_text(run_dir / CONFIG_FILE, parser.dump(cfg, skip_none=False))
    init = parser.instantiate_classes(cfg)
    pets(**vars(init), resume=bool(resume_dir))


def main(args: list[str] | None = None) -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore", message=".*treespec.*")  # lightning vs newer torch, not ours
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv[:1] == ["pets"]:
            return pets_main(argv[1:])
        if argv[:1] == ["data"]:
            from objmm.data_commands import data_main

            return data_main(argv[1:])
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
    # W&B caches settings (the working directory it resolves relative run dirs against) process-wide;
    # tearing it down lets a later in-process call (a notebook, the tests) start clean.
    wandb.teardown()


__all__ = ["ObjmmCLI", "WandbLogger", "main"]
