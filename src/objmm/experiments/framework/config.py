"""The settings of every objmm command: LightningCLI's config system with objmm's shared sections.

Every command reads `env` (id and kwargs, linked into the model and the data), `model`
(`DynamicsModule`), `data` (`TransitionDataModule`), `trainer` (Lightning's, W&B offline as its
logger) and `seed_everything`; an experiment adds its own typed section (a dataclass, validated in
its `__post_init__` while the config is parsed). `plain` turns a section into the plain data a
results file is keyed by.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import netrc
import os
import re
import warnings
from dataclasses import asdict, is_dataclass
from pathlib import Path
from urllib.parse import urlparse

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from objmm import interrupts
from objmm.envs import EnvSpec
from objmm.errors import ObjmmError
from objmm.seeding import seed_of
from objmm.training import DynamicsModule, TransitionDataModule
from objmm.training.reward_callback import run_directory
from objmm.training.trainer import quiet_lightning


def plain(value):
    """Settings as plain JSON data (dataclasses as dicts, tuples as lists, anything else as its
    text), as a results file keeps them: two runs with equal `plain` settings are the same run."""

    def encode(item):
        return asdict(item) if is_dataclass(item) and not isinstance(item, type) else str(item)

    return json.loads(json.dumps(value, default=encode))


def flat(config: dict, prefix: str = "") -> dict:
    """A nested config as `{"section.key": value}`."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


#: settings that change how a result is computed, not what it is: a run goes on with either value
#: and a results file never compares them (a captured CUDA graph plans to the bit what the eager step
#: plans: tests/test_planning.py)
HOW_SETTINGS = ("cem.cuda_graph",)


def names_setting(key: str, name: str) -> bool:
    """Whether the flat `key` is the setting `name` (`cem.cuda_graph`) at the top or inside a section
    (`pets.cem.cuda_graph`)."""
    return key == name or key.endswith(f".{name}")


def what_settings(config: dict) -> dict:
    """A nested config as `flat` gives it, less the `HOW_SETTINGS`."""
    return {k: v for k, v in flat(config).items() if not any(names_setting(k, h) for h in HOW_SETTINGS)}


def changed_settings(saved: dict, now: dict, may_change: tuple[str, ...] = ()) -> list[str]:
    """`key: old -> new` for every setting of a saved config that `now` changes (but those starting
    with one of `may_change`, and the `HOW_SETTINGS`); a setting added to objmm since the run was made
    is not a change."""
    before, after = what_settings(saved), what_settings(now)
    return [
        f"{key}: {before[key]!r} -> {value!r}"
        for key, value in after.items()
        if key in before and before[key] != value and not key.startswith(may_change)
    ]


def wandb_offline_logger() -> dict:
    return {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"project": "objmm", "save_dir": "runs", "offline": True},
    }


class RunConfigCallback(SaveConfigCallback):
    """Save the run's full config into its run directory and log it to W&B (or any logger)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        path = run_directory(trainer) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=False)
        for logger in trainer.loggers:
            logger.log_hyperparams(self.config.as_dict())


class ObjmmArgumentParser(LightningArgumentParser):
    """A parse error is one line naming the problem (and the nearest setting to a mistyped one),
    not jsonargparse's 60-line usage before it."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse trying alternatives (union types) catches its own errors
            return super().error(message, ex)
        lines = [line.strip() for line in str(message).splitlines() if line.strip()]
        reasons = [line[2:] for line in lines if line.startswith("- ")]  # a union's: one per type tried
        text = f"{lines[0]} {'; '.join(reasons)}" if reasons else " ".join(lines[:2])
        guesses = [
            f"{flag}: did you mean {close[0]}?"
            for flag in re.findall(r"(--[\w.\-]+)", text)
            if flag not in self.option_strings()
            for close in [difflib.get_close_matches(flag, self.option_strings(), n=1)]
            if close
        ]
        prog = self.prog.replace(" [options]", "")
        raise ObjmmError(
            f"{text}{' (' + '; '.join(guesses) + ')' if guesses else ''}; `{prog} --help` lists the settings"
        )

    def option_strings(self) -> list[str]:
        """Every --setting this parser (and its subcommands') takes."""
        parsers = [self]
        subcommands = getattr(self, "_subcommands_action", None)
        if subcommands is not None:
            parsers += list(subcommands._name_parser_map.values())
        return [s for parser in parsers for action in parser._actions for s in action.option_strings]


class InterruptCheck(L.Callback):
    """`interrupts.check()` after every batch, so a swallowed Ctrl-C still stops a fit (Lightning then
    handles it as its own: `trainer.interrupted`, SystemExit(1))."""

    def on_train_batch_end(self, *args, **kwargs) -> None:
        interrupts.check()

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        interrupts.check()


class ObjmmCLI(LightningCLI):
    """LightningCLI with objmm's shared sections; `sections={name: class}` adds an experiment's own.
    `command` and `run_dir` (the setting that names the experiment's folder, e.g. `population.out`)
    name its W&B run after that folder, with an id that a resumed run keeps."""

    def __init__(
        self,
        args=None,
        run: bool = True,
        sections: dict[str, type] | None = None,
        command: str | None = None,
        run_dir: str | None = None,
        **kwargs,
    ):
        self.sections, self.command, self.run_dir = sections or {}, command, run_dir
        kwargs.setdefault("trainer_defaults", {"logger": wandb_offline_logger()})
        kwargs.setdefault("parser_class", ObjmmArgumentParser)
        super().__init__(DynamicsModule, TransitionDataModule, args=args, run=run, seed_everything_default=0, **kwargs)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_wandb_login(config.trainer.get("logger"))
        if self.subcommand == "fit":
            same_wandb_run_on_resume(config)
        elif self.command and self.run_dir:
            name_wandb_run(config, self.command, config[self.run_dir])

    def _parse_ckpt_path(self) -> None:
        """LightningCLI puts a `--ckpt_path` checkpoint's model settings over the config's; a
        checkpoint of another model would silently train that one (and under the other run's W&B
        id). Refuse it in one line, naming the first setting that differs. (Overrides a private
        LightningCLI method: the only place where both the config's and the checkpoint's are seen.)"""
        given = self.config[self.config.subcommand].get("model") if self.config.get("subcommand") else None
        before = dict(given) if given is not None else {}
        super()._parse_ckpt_path()
        after = self.config[self.config.subcommand].get("model") if before else None
        for key in ("env_id", "members", "width", "depth", "probabilistic") if after is not None else ():
            if key in before and before[key] != after[key]:
                ckpt = self.config[self.config.subcommand].get("ckpt_path")
                raise ObjmmError(
                    f"--ckpt_path {ckpt} holds a model with model.{key} = {after[key]}, but the config's is "
                    f"{before[key]}; resume a fit with its own config"
                )

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
        kwargs["callbacks"] = [*given, InterruptCheck()]
        return super().instantiate_trainer(**kwargs)


def experiment_cli(
    command: str, description: str, argv: list[str], sections: dict[str, type], run_dir: str | None = None
) -> ObjmmCLI:
    """An experiment's config (`objmm <command>`): the shared sections plus its own, parsed and
    instantiated, nothing run and no config saved (each experiment writes its own record)."""
    quiet_lightning()
    # argv is the whole command line: LightningCLI warns that sys.argv also has arguments, which in a
    # Ray task (an experiment's piece: a PETS run of a sweep) are Ray's own worker arguments
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
    return ObjmmCLI(
        args=argv,
        run=False,
        sections=sections,
        command=command,
        run_dir=run_dir,
        save_config_callback=None,
        parser_kwargs={"prog": f"objmm {command}", "description": description},
    )


def is_wandb(logger) -> bool:
    return hasattr(logger, "class_path") and logger.class_path.endswith("WandbLogger")


def check_wandb_login(logger) -> None:
    """Going online needs a W&B login; say so before anything runs (W&B would ask at a prompt or fail
    deep inside its own start-up)."""
    if not is_wandb(logger):
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
    if not ckpt_path or not is_wandb(logger):
        return
    init_args = logger.init_args
    if init_args.get("id") is None and init_args.get("version") is None:
        init_args.id = Path(ckpt_path).resolve().parent.parent.name
        init_args.resume = "allow"


def wandb_run_id(command: str, folder: str | Path) -> str:
    """The W&B run id of an experiment's folder: the same folder is the same run, across resumes."""
    digest = hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:8]
    return f"{command}-{Path(folder).name}-{digest}"


def name_wandb_run(config, command: str, folder: str) -> None:
    """An experiment's W&B run: named after its folder, grouped by its command, with an id of the
    folder's so that every resume continues the same run (settings the config gives are kept)."""
    logger = config.trainer.get("logger")
    if not is_wandb(logger):
        return
    init_args = logger.init_args
    if init_args.get("name") is None:
        init_args.name = Path(folder).name
    if init_args.get("group") is None:
        init_args.group = command
    if init_args.get("id") is None and init_args.get("version") is None:
        init_args.id = wandb_run_id(command, folder)
        init_args.resume = "allow"
    if init_args.get("job_type") is None:
        init_args.job_type = command
