"""A PETS run's folder, as other commands read it: its state (every trial's metrics), its config and
its per-trial models. `objmm pets` (`pets.py`) writes them; `objmm data on-policy`, `pets-sweep`,
`population` and `babbling` read them here."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from objmm.errors import ObjmmError

STATE_FILE = "state.json"
CONFIG_FILE = "pets_config.yaml"


def load_state(run_dir: Path) -> dict:
    """The saved state of a PETS run directory, or a one-line error if it is not one."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file() or not (Path(run_dir) / CONFIG_FILE).is_file():
        raise ObjmmError(f"{run_dir} is not an objmm pets run (no {STATE_FILE} and {CONFIG_FILE})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ObjmmError(f"{path} is damaged ({error}); it is not valid JSON") from None


def load_config(run_dir: Path) -> dict:
    """The saved config of a PETS run, as plain data."""
    return yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text())


def model_path(run_dir: Path, trial: int) -> Path:
    """Where the model trained in trial `trial` (counted from 0) is kept."""
    return Path(run_dir) / "models" / f"trial_{trial:02d}.pt"
