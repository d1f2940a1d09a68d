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
from objmm.experiments.framework import RaySettings, run_pieces

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


def parsed_config(cli, drop: str = "sweep") -> dict:
    """The command's whole parsed config as plain data, without its own section (`sweep:`)."""
    base = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    base.pop(drop)
    return base


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


def run_all(command: str, sweep: SweepSettings, run_one: Callable, arguments: list[tuple], land: Callable) -> None:
    """`run_one(name, ...)` for every run's arguments, as Ray tasks or one after another here,
    `land(args, entry)` as each ends; Ctrl-C says that the same command goes on."""
    print(f"{command}: {len(arguments)} runs ({', '.join(a[0] for a in arguments)}) in {sweep.out}", flush=True)
    try:
        run_pieces(run_one, arguments, land, sweep.ray, describe=lambda i, args: f"{command}: run {args[0]}")
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"the same objmm {command} command goes on from here ({sweep.out})") from None
