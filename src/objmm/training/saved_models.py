"""A trained dynamics model as one file: its settings, weights and what it was trained on; and the
one way every command finds and reads models.

`save_model` writes `{"hparams", "objective", "state_dict", **info}` atomically (PETS keeps one
per trial, `models/trial_NN.pt`, with the dataset size it was trained on). `load_model` rebuilds
the `DynamicsModule` from such a file or from a Lightning checkpoint of `objmm fit` (`.ckpt`), with
one clear line when the file is missing or damaged. `find_models` turns a setting's entries (files,
run folders) into model files, the same way for every command.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.objectives import build_objective
from objmm.training.module import DynamicsModule

#: what a saved model's file is called: `save_model`'s files, and `objmm fit`'s checkpoints
MODEL_SUFFIXES = (".pt", ".ckpt")


def module_settings(module: DynamicsModule | dict) -> dict:
    """The module's constructor settings but its objective (LightningCLI adds its bookkeeping to hparams)."""
    settings = inspect.signature(DynamicsModule).parameters
    hparams = module if isinstance(module, dict) else module.hparams
    return {k: v for k, v in hparams.items() if k in settings and k != "objective"}


def save_model(path: Path, module: DynamicsModule, **info) -> Path:
    payload = {
        "hparams": module_settings(module),
        "objective": module.objective.spec(),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        **info,
    }
    return atomic.write_atomically(path, lambda tmp: torch.save(payload, tmp))


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[DynamicsModule, dict]:
    """The module saved at `path` (a saved model or a fit checkpoint) and the rest of what was saved
    with it (trial, dataset rows, a checkpoint's epoch ...)."""
    path = Path(path)
    if not path.is_file():
        raise ObjmmError(f"{path}: no saved model there")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if "hyper_parameters" in payload:  # a Lightning checkpoint of `objmm fit`
            hparams, info = module_settings(payload["hyper_parameters"]), {"epoch": payload.get("epoch")}
        else:
            hparams = payload["hparams"]
            info = {k: v for k, v in payload.items() if k not in ("hparams", "objective", "state_dict")}
        # a checkpoint written before objmm saved its objective trains with its type's default
        objective = build_objective(payload["objective"]) if "objective" in payload else None
        module = DynamicsModule(**hparams, objective=objective)
        module.load_state_dict(payload["state_dict"])
    except ObjmmError:
        raise
    except Exception as error:  # a truncated or foreign file: say which, not torch's traceback
        raise ObjmmError(f"{path} is not a readable objmm model ({type(error).__name__}: {error})") from None
    return module.to(device), info


def natural(path: Path) -> list:
    """Sort key that puts trial_99 before trial_100."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_models(entries: str | list[str], setting: str) -> list[Path]:
    """Every model file named by `entries`, in order, once: a file is itself; a folder (a PETS run,
    a pets-sweep, a models folder) gives its saved models (`*.pt`, in trial order), or where it has
    none, `objmm fit`'s checkpoints (`*.ckpt`). `setting` names the entries in errors."""
    found: dict[Path, None] = {}
    for entry in map(Path, [entries] if isinstance(entries, str) else entries):
        if entry.is_file():
            files = [entry]
        elif entry.is_dir():
            files = sorted(entry.rglob("*.pt"), key=natural) or sorted(entry.rglob("*.ckpt"), key=natural)
        else:
            raise ObjmmError(f"{setting}: {entry} does not exist")
        if not files:
            raise ObjmmError(f"{setting}: {entry} holds no saved models (models/trial_NN.pt, or a fit's *.ckpt)")
        found.update(dict.fromkeys(files))
    return list(found)


def check_env(module: DynamicsModule, path: Path, env: dict, setting: str = "env") -> None:
    """A model of another env is refused in one line; one trained for other env settings (another
    goal) is used as asked, with a note, since a model's predictions do not depend on them."""
    if module.hparams["env_id"] != env["id"]:
        raise ObjmmError(f"{path} is a model of {module.hparams['env_id']}, but {setting}.id is {env['id']}")
    trained = dict(module.hparams.get("env_kwargs") or {})
    if trained != dict(env.get("kwargs") or {}):
        print(f"note: {path} was trained with {setting}.kwargs {trained}; here they are {env['kwargs']}", flush=True)
