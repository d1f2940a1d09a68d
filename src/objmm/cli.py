"""`objmm`: one command line for every experiment, on LightningCLI's config system.

    objmm fit --config configs/cartpole_pe.yaml       # fit a model, reward measured every few epochs
    objmm pets --config configs/pets_cartpole.yaml    # the PETS loop (experiments/pets.py)
    objmm data grid ...                               # the paper's datasets (experiments/datasets.py)
    objmm evaluate --models runs/pets/models ...      # saved models on datasets (experiments/evaluate.py)
    objmm pets-sweep --config configs/population/cartpole_runs.yaml   # many PETS runs: a population
    objmm population --config configs/population/cartpole.yaml   # LL vs reward of many models (Fig. 3)
    objmm fit-sweep --config configs/population/cartpole_training_study.yaml   # M fits per model type (Fig. 4-5)
    objmm attack --config configs/attack/cartpole.yaml      # lower the reward, keep the LL (Sec. 4.3, Fig. 6-7)
    objmm reweight --config configs/reweight/cartpole.yaml  # (S, eps) grid, weighted vs unweighted (Fig. 8)
    objmm pairs --config configs/pairs/cartpole.yaml        # models of similar LL, far-apart rewards (App. E)

Every command that trains models reads the same sections: `env` (id and settings, linked into
the model and the data), `model` (`DynamicsModule`: the network and its objective by class path),
`data` (`TransitionDataModule`), `trainer` (Lightning's, with W&B offline as its logger) and
`seed_everything` (the one seed); an experiment adds its own section (`pets:`). A model section
written for `fit` works in `pets` unchanged.

Bad input ends with one line, `objmm: error: ...`, and exit status 2.
"""

from __future__ import annotations

import importlib
import logging
import netrc
import os
import sys
import warnings
from pathlib import Path
from urllib.parse import urlparse

import lightning as L
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from objmm import interrupts
from objmm.envs import EnvSpec
from objmm.errors import ObjmmError
from objmm.seeding import seed_of
from objmm.training import DynamicsModule, TransitionDataModule
from objmm.training.reward_callback import run_directory
from objmm.training.trainer import quiet_lightning

#: the experiments beside Lightning's own fit / validate: subcommand -> module with `main(argv)`
EXPERIMENTS = {
    "pets": "objmm.experiments.pets",
    "data": "objmm.experiments.datasets",
    "evaluate": "objmm.experiments.evaluate",
    "population": "objmm.experiments.population",
    "pets-sweep": "objmm.experiments.pets_sweep",
    "fit-sweep": "objmm.experiments.fit_sweep",
    "attack": "objmm.experiments.attack",
    "reweight": "objmm.experiments.reweight",
    "pairs": "objmm.experiments.pairs",
}


class RunConfigCallback(SaveConfigCallback):
    """Save the run's full config into its run directory and log it to W&B (or any logger)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        path = run_directory(trainer) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=False)
        for logger in trainer.loggers:
            logger.log_hyperparams(self.config.as_dict())


def wandb_offline_logger() -> dict:
    return {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"project": "objmm", "save_dir": "runs", "offline": True},
    }


class ObjmmCLI(LightningCLI):
    """LightningCLI with objmm's shared sections; `sections={name: class}` adds an experiment's own."""

    def __init__(self, args=None, run: bool = True, sections: dict[str, type] | None = None, **kwargs):
        self.sections = sections or {}
        kwargs.setdefault("trainer_defaults", {"logger": wandb_offline_logger()})
        super().__init__(DynamicsModule, TransitionDataModule, args=args, run=run, seed_everything_default=0, **kwargs)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_wandb_login(config.trainer.get("logger"))
        if self.subcommand == "fit":
            same_wandb_run_on_resume(config)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(EnvSpec, "env")
        for source, target in (
            ("env.id", "model.env_id"),
            ("env.id", "data.env_id"),
            ("env.kwargs", "model.env_kwargs"),
            ("env.kwargs", "data.env_kwargs"),
            ("model.members", "data.ensemble_size"),
        ):
            parser.link_arguments(source, target)
        parser.link_arguments("seed_everything", "data.seed", compute_fn=seed_of)
        for name, settings in self.sections.items():
            parser.add_class_arguments(settings, name)

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """Every trainer (fit's and each experiment's) stops on a Ctrl-C even if Python swallowed it."""
        # callbacks given here replace the config's, as in LightningCLI; either way the check is added
        given = kwargs["callbacks"] if "callbacks" in kwargs else self._get(self.config_init, "trainer")["callbacks"]
        given = [] if given is None else given if isinstance(given, list) else [given]
        kwargs["callbacks"] = [*given, interrupts.InterruptCheck()]
        return super().instantiate_trainer(**kwargs)


def experiment_cli(command: str, description: str, argv: list[str], sections: dict[str, type]) -> ObjmmCLI:
    """An experiment's config (`objmm <command>`): the shared sections plus its own, parsed and
    instantiated, nothing run and no config saved (each experiment writes its own record)."""
    quiet_lightning()
    return ObjmmCLI(
        args=argv,
        run=False,
        sections=sections,
        save_config_callback=None,
        parser_kwargs={"prog": f"objmm {command}", "description": description},
    )


class ExperimentRun:
    """What an experiment that keeps its results in `<section>.out` reads from its parsed config: its
    own section (`settings`), the env, the seed, the device, the logger, and the file the same
    command goes on from after a kill (`resume_from`). Subclasses name `section`, `settings_class`,
    `resume_file` and write `run()`."""

    section: str
    settings_class: type
    resume_file: str

    def __init__(self, cli):
        self.cli = cli
        self.settings = getattr(cli.config_init, self.section)
        env = cli.config_init.env
        self.env = {"id": env.id, "kwargs": dict(env.kwargs or {})}
        self.seed = cli.datamodule.seed
        self.device = str(cli.trainer.strategy.root_device)
        self.logger = cli.trainer.logger
        self.out = Path(self.settings.out)

    @property
    def resume_from(self) -> Path:
        """What the same command goes on from after a kill or Ctrl-C."""
        return self.out / self.resume_file

    def run(self):
        raise NotImplementedError


def run_experiment(command: str, description: str, argv: list[str], runner: type[ExperimentRun]) -> None:
    """Parse an experiment's config (the shared sections and `runner.section`) and run it. Ctrl-C
    ends with the line that the same command goes on from `resume_from` (written as it goes)."""
    run = runner(experiment_cli(command, description, argv, {runner.section: runner.settings_class}))
    try:
        run.run()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"the same objmm {command} command goes on from {run.resume_from}") from None


def check_wandb_login(logger) -> None:
    """Going online needs a W&B login; say so before anything runs (W&B would ask at a prompt or fail
    deep inside its own start-up)."""
    if not hasattr(logger, "class_path") or not logger.class_path.endswith("WandbLogger"):
        return
    if logger.init_args.get("offline", False) or os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return
    if os.environ.get("WANDB_API_KEY"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        if netrc.netrc(os.environ.get("NETRC") or None).authenticators(host):
            return
    except (OSError, netrc.NetrcParseError):
        pass
    raise ObjmmError(
        "trainer.logger.init_args.offline is false but W&B has no login here; run `wandb login` "
        "(or set WANDB_API_KEY), or keep the run offline and `wandb sync` it later"
    )


def same_wandb_run_on_resume(config) -> None:
    """`fit --ckpt_path runs/<project>/<run id>/checkpoints/last.ckpt` goes on in W&B run <run id>,
    which also keeps its checkpoint folder (Lightning names it after the logger's run id); offline,
    each part is a folder of its own under runs/wandb/ and `wandb sync` joins them into the one run."""
    ckpt_path, logger = config.get("ckpt_path"), config.trainer.get("logger")
    if not ckpt_path or not hasattr(logger, "class_path") or not logger.class_path.endswith("WandbLogger"):
        return
    init_args = logger.init_args
    if init_args.get("id") is None and init_args.get("version") is None:
        init_args.id = Path(ckpt_path).resolve().parent.parent.name
        init_args.resume = "allow"


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


def fit_cli(args: list[str]) -> None:
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
            parser_kwargs={
                "description": __doc__.splitlines()[0] + " Experiments beside fit: " + ", ".join(EXPERIMENTS)
            },
            trainer_defaults={"logger": wandb_offline_logger(), "callbacks": [hint]},
        )
    except SystemExit:
        if hint.message:  # Ctrl-C: say so, and where to resume, with the usual status 130
            raise KeyboardInterrupt(hint.message) from None
        raise


def main(args: list[str] | None = None) -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # "Seed set to 0"
    warnings.filterwarnings("ignore", message=".*treespec.*")  # lightning vs newer torch, not ours
    # LightningCLI warns when called in-process (tests, notebooks) while sys.argv holds other arguments
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    argv = sys.argv[1:] if args is None else list(args)
    try:
        with interrupts.handled():
            if argv and argv[0] in EXPERIMENTS:
                importlib.import_module(EXPERIMENTS[argv[0]]).main(argv[1:])
            else:
                fit_cli(argv)
    except Exception as error:
        cause = objmm_cause(error)
        if cause is None:
            raise
        finish_wandb(exit_code=2)
        print(f"objmm: error: {cause}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:
        finish_wandb(exit_code=130)
        print(f"objmm: interrupted; {interrupt}" if str(interrupt) else "objmm: interrupted", file=sys.stderr)
        sys.exit(130)
    finish_wandb(exit_code=0)


def objmm_cause(error: BaseException) -> ObjmmError | None:
    """The ObjmmError behind `error`, if any: jsonargparse wraps the errors of the classes it
    instantiates (a callback's bad setting) in its own, with ours as the cause."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ObjmmError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def finish_wandb(exit_code: int) -> None:
    """Close the W&B run so its offline files are complete when objmm returns (also when called in-process)."""
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
    # W&B caches settings (the working directory it resolves relative run dirs against) process-wide;
    # tearing it down lets a later in-process call (a notebook, the tests) start clean.
    wandb.teardown()


__all__ = ["ObjmmCLI", "main"]
