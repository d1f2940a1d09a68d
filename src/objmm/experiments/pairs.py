"""`objmm pairs`: models of nearly the same likelihood and far-apart rewards, side by side (the paper's App. E).

    objmm pairs --config configs/pairs/cartpole.yaml

From a population table (`objmm population`'s `population.json`) it picks up to `pairs` pairs of
models whose LL (the table column `ll`) differs by at most `tolerance` and whose mean rewards
differ by at least `min_gap`, the largest reward gaps first, each model in one pair at most. For
every pair, `pair_N.png` shows along an expert trajectory the action each model's planner picks
from each expert state and each model's predicted next state (`along_expert`); `pairs.json` lists
the pairs with their LLs, rewards and the mean gap between their planned actions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from objmm import atomic
from objmm.errors import ObjmmError, require_at_least_one
from objmm.experiments.along_expert import along_expert, expert_trajectory, plot_models_along_expert
from objmm.experiments.framework import ExperimentRun, run_experiment
from objmm.planning import CEMConfig
from objmm.training.saved_models import load_model

PAIRS = "pairs.json"


@dataclass
class PairsSettings:
    """The `pairs:` section.

    Args:
        table: a population table (`population.json`).
        ll: the table column whose values must be close (`<dataset>/<batches>/paper_ll`).
        tolerance: the largest LL difference within a pair.
        min_gap: the smallest difference of mean reward within a pair.
        pairs: how many pairs to show.
        expert: an expert dataset; its first trajectory is where the models are compared.
        cem: the planner whose actions are shown (default: the table's).
        out: where the figures and pairs.json go.
    """

    table: str = ""
    ll: str = "expert/random/paper_ll"
    tolerance: float = 0.05
    min_gap: float = 50.0
    pairs: int = 3
    expert: str = ""
    cem: CEMConfig | None = None
    out: str = "runs/pairs"

    def __post_init__(self):
        require_at_least_one("pairs", pairs=self.pairs)
        if not self.table or not self.expert:
            raise ObjmmError("pairs.table and pairs.expert are both needed (a population.json and an expert dataset)")
        if self.tolerance < 0 or self.min_gap < 0:
            raise ObjmmError(f"pairs.tolerance and pairs.min_gap must be >= 0, got {self.tolerance} and {self.min_gap}")


def read_table(path: str) -> dict:
    try:
        table = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ObjmmError(
            f"pairs.table: no population table at {path} (objmm population writes population.json)"
        ) from None
    except json.JSONDecodeError as error:
        raise ObjmmError(f"pairs.table {path} is not a population table ({error})") from None
    if not isinstance(table, dict) or "rows" not in table:
        raise ObjmmError(f"pairs.table {path} is not a population table (no rows)")
    return table


def pick_pairs(rows: list[dict], ll: str, tolerance: float, min_gap: float, pairs: int) -> list[tuple[dict, dict]]:
    """Pairs with |LL a - LL b| <= tolerance and reward gap >= min_gap, largest gaps first, each model once.
    In each pair the first model is the one with the higher reward."""
    usable = [r for r in rows if np.isfinite(r.get(ll, np.nan)) and np.isfinite(r.get("reward/mean", np.nan))]
    candidates = []
    for a, b in combinations(usable, 2):
        gap = abs(a["reward/mean"] - b["reward/mean"])
        if abs(a[ll] - b[ll]) <= tolerance and gap >= min_gap:
            high, low = (a, b) if a["reward/mean"] >= b["reward/mean"] else (b, a)
            candidates.append((gap, high, low))
    candidates.sort(key=lambda c: -c[0])
    chosen, used = [], set()
    for _, high, low in candidates:
        if high["model"] in used or low["model"] in used:
            continue
        chosen.append((high, low))
        used.update((high["model"], low["model"]))
        if len(chosen) == pairs:
            break
    return chosen


class PairsRun(ExperimentRun):
    section, settings_class, resume_file = "pairs", PairsSettings, PAIRS
    settings: PairsSettings

    def prepare(self) -> None:
        s = self.settings
        table = read_table(s.table)
        rows = table["rows"]
        if rows and s.ll not in rows[0]:
            columns = sorted(k for k in rows[0] if k.endswith("paper_ll") or k.endswith("nll"))
            raise ObjmmError(f"pairs.ll {s.ll!r} is not a column of {s.table}; its LL columns: {', '.join(columns)}")
        self.chosen = pick_pairs(rows, s.ll, s.tolerance, s.min_gap, s.pairs)
        if not self.chosen:
            raise ObjmmError(
                f"no two of the {len(rows)} models have {s.ll} within {s.tolerance} and rewards {s.min_gap} apart; "
                "raise pairs.tolerance or lower pairs.min_gap"
            )
        self.cem = s.cem or CEMConfig(**table["settings"]["cem"])
        self.trajectory = expert_trajectory(s.expert, self.env["id"], "pairs.expert")

    def run(self) -> list[dict]:
        s, found_pairs, figures = self.settings, [], {}
        for i, (high, low) in enumerate(self.chosen):
            modules = [load_model(Path(row["model"]), self.device)[0] for row in (high, low)]
            print(f"pairs: pair {i + 1}/{len(self.chosen)}: planning along the expert trajectory", flush=True)
            found = along_expert(modules, self.trajectory, self.cem, self.env["kwargs"], self.seed, self.device)
            names = [
                f"{Path(r['run']).name} trial {r['trial']}: reward {r['reward/mean']:.1f}, LL {r[s.ll]:.3f}"
                for r in (high, low)
            ]
            figure = plot_models_along_expert(
                names, found, self.env["id"], self.out / f"pair_{i + 1}.png", f"Similar LL ({s.ll}), different reward"
            )
            figures[figure.stem] = figure
            action_gap = float(np.abs(found["actions"][0] - found["actions"][1]).mean())
            found_pairs.append(
                {
                    "models": [r["model"] for r in (high, low)],
                    "ll": [r[s.ll] for r in (high, low)],
                    "reward": [r["reward/mean"] for r in (high, low)],
                    "mean_action_gap": action_gap,
                    "figure": str(figure),
                }
            )
            print(
                f"pairs: pair {i + 1}: rewards {high['reward/mean']:.1f} vs {low['reward/mean']:.1f}, "
                f"LL {high[s.ll]:.3f} vs {low[s.ll]:.3f}; "
                f"planned actions differ by {action_gap:.3f} on average -> {figure}",
                flush=True,
            )
        atomic.write_json(self.out / PAIRS, {"settings": {**asdict(s), "cem": asdict(self.cem)}, "pairs": found_pairs})
        if self.logger:
            self.logger.log_metrics(
                {f"pairs/pair_{i + 1}/action_gap": p["mean_action_gap"] for i, p in enumerate(found_pairs)}
            )
        self.publish(f"{len(found_pairs)} pairs", [self.out / PAIRS], figures)
        return found_pairs


def main(argv: list[str]) -> None:
    run_experiment("pairs", __doc__.splitlines()[0], argv, PairsRun)
