"""`objmm evaluate`: saved models' metrics on named datasets, with random-row and trajectory batches.

    objmm evaluate --models runs/pets_s0/models/trial_19.pt --datasets '{on_policy: data/cartpole_on-policy}'
    objmm evaluate --models runs/pets_s0/models --datasets '{grid: grid, expert: data/cartpole_expert}'

For every model (a file, or every `*.pt` in a folder) and every dataset it reports the full NLL, the
paper's LL, MSE and the objective's loss (means over rows) and Appendix C's medians over batches,
once per batch mode (`docs/objectives.md`); the table goes to `--out` (JSON, written atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from objmm import atomic
from objmm.data import load_source
from objmm.errors import ObjmmError, require_at_least_one
from objmm.training.metrics import dataset_metrics
from objmm.training.saved_models import find_models, load_model


def evaluate(
    models: str | list[str],
    datasets: dict[str, str],
    batches: list[Literal["random", "trajectory"]] = ["random", "trajectory"],  # noqa: B006 (jsonargparse reads it)
    batch_size: int = 64,
    seed: int = 0,
    out: str = "evaluation.json",
) -> list[dict]:
    """Metrics of saved models on named datasets.

    Args:
        models: a model file (`models/trial_NN.pt` of a PETS run, a fit's `.ckpt`) or a folder of them (a
            PETS run, a sweep), or a list of these.
        datasets: name -> dataset source (a saved dataset directory, `grid`, `random:EPISODESxHORIZON`, ...).
        batches: the batch modes: `random` rows of `batch_size` (the half cheetah's PETS default is 64),
            and/or one whole `trajectory` a batch (Appendix C).
        batch_size: rows per random batch.
        seed: the seed of the random batches and of generated datasets.
        out: where the table goes (JSON: one row per model, dataset and batch mode).
    """
    require_at_least_one("", batch_size=batch_size)
    if not datasets:
        raise ObjmmError("evaluate needs at least one dataset (--datasets '{name: source}')")
    rows, loaded = [], {}
    for path in find_models(models, "--models"):
        module, info = load_model(path)
        env_id = module.hparams["env_id"]
        for name, source in datasets.items():
            if (source, env_id) not in loaded:
                loaded[source, env_id] = load_source(source, env_id, seed=seed)
            for mode in batches:
                metrics = dataset_metrics(
                    module.model, loaded[source, env_id], module.objective, mode, batch_size, seed
                )
                rows.append({"model": str(path), **info, "dataset": name, "batches": mode, **metrics})
                shown = "  ".join(
                    f"{k} {v:.4g}" for k, v in metrics.items() if k in ("nll", "paper_ll", "paper_ll_batch_median")
                )
                print(f"{path.name} on {name} ({mode} batches): {shown}", flush=True)
    atomic.write_json(Path(out), {"batch_size": batch_size, "rows": rows})
    print(f"evaluate: {len(rows)} rows -> {out}")
    return rows


def main(argv: list[str]) -> None:
    from jsonargparse import CLI

    CLI(evaluate, args=argv, as_positional=False, prog="objmm evaluate", description=__doc__.splitlines()[0])
