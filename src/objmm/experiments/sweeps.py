"""What `objmm pets-sweep` and `objmm fit-sweep` share: the `sweep:` section, one config per model
type and seed, and the index of finished runs.

A sweep's config is its command's config plus `sweep:`. The parsed config is dumped once; each run
gets a copy with its `seed_everything`, its model type's `model` section and, when the logger is
W&B, the run's name and the sweep as its group, written to `<out>/configs/<TYPE>_s<SEED>.yaml`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jsonargparse.typing import Path_fr

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.experiments.framework import ExperimentRun, RaySettings, run_pieces

INDEX = "index.json"


@dataclass
class SweepSettings:
    """The `sweep:` section.

    Args:
        seeds: one run per seed (its `seed_everything`).
        models: model type -> its model section, a file (`{D: ../models/d.yaml}`, relative to the
            config file that names it, as `model: ../models/d.yaml` is) or written out
            (`{D: {members: 1, probabilistic: false}}`); empty: the config's own `model`, one type,
            named by what it is (D, DE, P or PE).
        out: the sweep directory: one run directory per type and seed, `configs/`, and `index.json`.
        ray: with an address, each run is a Ray task (`cpus_per_task` threads each).
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    models: dict[str, Path_fr | dict] = field(default_factory=dict)
    out: str = "runs/sweep"
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self):
        if not self.seeds:
            raise ObjmmError("sweep.seeds is empty; give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ObjmmError(f"sweep.seeds repeats a seed: {self.seeds}")


def model_type(model: dict) -> str:
    """D, DE, P or PE (the paper's names) of a model section."""
    return ("P" if model.get("probabilistic", True) else "D") + ("E" if model.get("members", 5) > 1 else "")


#: what names the W&B run of the sweep's own command; each run it starts gets its own
WANDB_RUN_IDENTITY = ("id", "version", "name", "group", "job_type", "resume")


def parsed_config(cli, drop: str = "sweep") -> dict:
    """The command's whole parsed config as plain data for the runs it starts: without its own
    section (`sweep:`) and without its own W&B run's name and id."""
    base = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    base.pop(drop)
    logger = base["trainer"].get("logger")
    if isinstance(logger, dict) and isinstance(logger.get("init_args"), dict):
        for key in WANDB_RUN_IDENTITY:
            logger["init_args"].pop(key, None)
    return base


def type_of_run(run: str) -> str:
    """The model type a sweep's run name (`<TYPE>_s<SEED>`, from `run_configs`) names."""
    return run.rsplit("_s", 1)[0]


def run_configs(base: dict, sweep: SweepSettings) -> list[tuple[str, dict]]:
    """(run name, its full config) for every model type and seed, types first."""
    types = {
        name: dict(model) if isinstance(model, dict) else yaml.safe_load(Path(str(model.absolute)).read_text())
        for name, model in sweep.models.items()
    }
    types = types or {model_type(base["model"]): base["model"]}
    runs = []
    for name, model in types.items():
        for seed in sweep.seeds:
            run = f"{name}_s{seed}"
            config = {**base, "seed_everything": seed, "model": model}
            runs.append((run, with_wandb(config, name=run, group=Path(sweep.out).name)))
    return runs


def with_wandb(config: dict, **init_args) -> dict:
    """`config` with these settings added to its W&B logger's (unchanged if it logs elsewhere)."""
    logger = config["trainer"].get("logger")
    if not (isinstance(logger, dict) and logger.get("class_path", "").endswith("WandbLogger")):
        return config
    logger = {**logger, "init_args": {**logger["init_args"], **init_args}}
    return {**config, "trainer": {**config["trainer"], "logger": logger}}


def write_config(out: Path, name: str, config: dict) -> Path:
    return atomic.write_text(out / "configs" / f"{name}.yaml", yaml.safe_dump(config, sort_keys=False))


class SweepIndex:
    """`index.json`: one entry per finished (or advanced) run, in the sweep's run order, rewritten
    atomically as each run ends."""

    def __init__(self, out: Path, order: list[str]):
        self.path, self.order = out / INDEX, order
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            self.entries = {entry["run"]: entry for entry in json.loads(self.path.read_text())["runs"]}

    def add(self, entry: dict) -> None:
        self.entries[entry["run"]] = entry
        atomic.write_json(self.path, {"runs": [self.entries[n] for n in self.order if n in self.entries]})


class SweepRun(ExperimentRun):
    """A sweep on the experiment framework: its `sweep:` section, its folder (`sweep.out`), its saved
    config (so `--resume FOLDER` works), and its runs dispatched by `run_all`. Each run is an ordinary
    `objmm pets` or `objmm fit` with a W&B run of its own, so the sweep logs no W&B run itself."""

    section, settings_class, resume_file = "sweep", SweepSettings, INDEX
    settings: SweepSettings
    command: str

    def log_config(self) -> None:
        """Each run logs its own config to its own W&B run."""

    def interrupted(self, command: str) -> str:
        return f"the same objmm {command} command goes on from here ({self.out})"

    def run_all(
        self, run_one: Callable, arguments: list[tuple], land: Callable, unit: tuple[str, str] = ("run", "runs")
    ) -> None:
        """`run_one(name, ...)` for every run's arguments, as Ray tasks or one after another here,
        `land(args, entry)` as each ends; `unit` names what one call runs, singular and plural."""
        names = ", ".join(a[0] for a in arguments)
        print(f"{self.command}: {len(arguments)} {unit[len(arguments) != 1]} ({names}) in {self.out}", flush=True)
        describe = lambda i, args: f"{self.command}: {unit[0]} {args[0]}"  # noqa: E731
        run_pieces(run_one, arguments, land, self.settings.ray, describe=describe)
