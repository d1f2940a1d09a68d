"""What the report of `objmm reproduce` finds: each of the paper's effects, our number with its
interval, the paper's number and a verdict, every one of ours read from a step's result files
(`report.py` writes them down).

A reader (`READERS`) takes a step's folder and returns a `Section`: its findings and its figures.
The paper's numbers come from the task (`Task.paper_fig3_rho`, `Task.paper_app_c_rho`) or, for the
effects the paper states in words or in one figure, from `PAPER` below, each with where it is printed.

Verdicts, on the direction of each effect (`RULES` says how each is decided):
- `reproduced`: our number agrees with the paper's (the paper's rho inside our interval) or the
  effect has the paper's direction with an interval that excludes no effect;
- `direction only`: the paper's direction, but the interval holds 0 (or there is no interval);
- `not reproduced`: not the paper's number, or the opposite direction;
- `undecided`: an interval of rho wider than 1 (a handful of models), or a paired change resampled by
  run over fewer than 3 runs, decides nothing;
- `not run at this scale`: a step of the paper the scale leaves out; `not run yet`: the scale has
  steps that have not run (`--only`), so an experiment without a finding may be one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from objmm.envs import get_task
from objmm.errors import ObjmmError
from objmm.experiments.population_analysis import bounds
from objmm.stats import mean_interval, paired_difference

REPRODUCED, DIRECTION, NOT_REPRODUCED = "reproduced", "direction only", "not reproduced"
UNDECIDED, FEW_RUNS = "undecided (interval too wide)", "undecided (fewer than 3 runs)"
NOT_RUN, NOT_RUN_YET, CONTEXT = "not run at this scale", "not run yet", "-"

#: the paper's experiments the report gives a verdict on; a scale that leaves one out says so
ITEMS = (
    "Fig. 3 cartpole",
    "App. C cartpole",
    "Fig. 3 half cheetah",
    "App. C half cheetah",
    "Fig. 4-5",
    "Sec. 4.3",
    "Fig. 8",
    "App. A",
    "App. B",
    "App. E",
)

#: Fig. 8's "smaller dataset sizes": the smaller half of the paper's log-grid of S, 10 ... 2500
SMALL_S = 158

#: the paper's numbers that the tasks do not hold: (the number as the report prints it, where it is)
PAPER = {
    "attack_drop": (0.44, "Sec. 4.3: 176 -> 98, -44%, with the LL kept"),
    "fig4": "reward best early, the validation loss best later (Fig. 4-5)",
    "fig8": "re-weighting gains reward at small S (Fig. 8)",
    "fig10": "more off-task babbling data, slower learning (App. A, Fig. 10)",
    "app_e": "models of similar LL with far-apart rewards (App. E)",
    "app_b": "goals near 0 solved, farther ones less, as the data covers them (App. B, Fig. 12-13)",
}

RULES = {
    "Fig. 3": "reproduced if the paper's rho lies in our 95% interval (clustered by run with 3 runs or "
    "more, else over models)",
    "App. C": "the paired change of rho on the same models, resampled by run: reproduced if its interval is above "
    "0, direction only if its mean is, else not reproduced; undecided with fewer than 3 runs",
    "Sec. 4.3": "reproduced if the reward on fresh episodes fell by at least half the paper's -44% with the LL "
    "kept in its bound and the drop's interval (paired by episode) above 0, direction only if that interval is "
    "above 0, else not reproduced",
    "Fig. 4-5": "reproduced if the reward's best epoch comes before the validation loss's in most model types",
    "Fig. 8": "the paired reward difference to the NLL model in the cells of small S (the smaller half of the "
    "paper's log-grid, S <= 158; the smallest S where the grid has none): reproduced if it is above 0 in a cell "
    "and below in none, direction only if its mean is above 0 in most cells, else not reproduced",
    "Fig. 10": "the mean of the last 3 trials, smallest S minus largest, paired by seed: reproduced if its "
    "interval is above 0, direction only if its mean is",
    "App. B": "Spearman's rho across goals between the share of the run's rows near the goal and the last "
    "model's reward: reproduced if its interval is above 0, direction only if it is",
    "App. E": "reproduced if a pair within the LL tolerance and at least the set reward gap apart was found",
}


@dataclass
class Finding:
    item: str  # one of ITEMS
    effect: str
    paper: str
    ours: str
    verdict: str
    step: str = ""

    def as_row(self) -> dict:
        return {
            "effect": self.effect,
            "paper": self.paper,
            "objmm": self.ours,
            "verdict": self.verdict,
            "step": self.step,
        }


@dataclass
class Section:
    findings: list[Finding] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def read_json(path: Path) -> dict:
    import json

    if not path.is_file():
        raise ObjmmError(f"report: {path} is missing; run the step that writes it again")
    return json.loads(path.read_text())


def saved_env(folder: Path) -> str:
    """The env id a step ran on, from the config it saved in its folder."""
    for config in sorted(folder.glob("*_config.yaml")):
        env = (yaml.safe_load(config.read_text()) or {}).get("env") or {}
        if env.get("id"):
            return env["id"]
    raise ObjmmError(f"report: {folder} holds no objmm config (*_config.yaml) naming its env")


def interval(mean: float, low: float, high: float, digits: int = 2) -> str:
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def change_verdict(mean: float, low: float) -> str:
    return REPRODUCED if low > 0 else DIRECTION if mean > 0 else NOT_REPRODUCED


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def short_name(task) -> str:
    return task.name.removeprefix("PETS ")


def population(folder: Path) -> Section:
    """Fig. 3's rho per dataset (Pearson, the mean LL over rows) and Appendix C's paired changes."""
    found = read_json(folder / "correlations.json")
    task = get_task(saved_env(folder))
    name = short_name(task)
    section = Section(figures=[folder / "fig3.png"])
    for c in found["correlations"]:
        if c["method"] != "pearson" or c["ll"] != "random/paper_ll" or "paper_rho" not in c:
            continue
        keys = bounds(c)  # by run with 3 runs or more, as Fig. 3's panels show it
        low, high, by_run = c[keys[0]], c[keys[1]], keys[0] == "run_low"
        runs = plural(c.get("runs", 1), "run")
        where = f"{runs}, by run" if by_run else f"{plural(c['n'], 'model')} of {runs}, over models"
        verdict = UNDECIDED if high - low > 1 else REPRODUCED if low <= c["paper_rho"] <= high else NOT_REPRODUCED
        section.findings.append(
            Finding(
                f"Fig. 3 {name}",
                f"Fig. 3, {name}: rho(LL, reward), {c['dataset'].replace('_', '-')} set",
                f"{c['paper_rho']:+.2f}",
                f"{interval(c['rho'], low, high)} ({where})",
                verdict,
            )
        )
    paper = dict(task.paper_app_c_rho)
    for to, frm in (("trajectory", "random"), ("large", "random")):
        for change in found.get(f"{to}_minus_{frm}", []):
            if change["method"] != "pearson" or change["dataset"] != "on_policy" or to not in paper:
                continue
            section.findings.append(
                Finding(
                    f"App. C {name}",
                    f"App. C, {name}: rho with {to} batches minus random batches, on-policy set",
                    f"{paper[to] - paper[frm]:+.2f} ({paper[frm]:.2f} -> {paper[to]:.2f})",
                    f"{interval(change['mean'], change['low'], change['high'])} (paired, {change['n']} models "
                    f"of {plural(change['clusters'], 'run')}, resampled by run)",
                    FEW_RUNS if change["clusters"] < 3 else change_verdict(change["mean"], change["low"]),
                )
            )
    return section


def attack(folder: Path) -> Section:
    found = read_json(folder / "attack.json")
    share, where = PAPER["attack_drop"]
    fresh = found.get("fresh_episodes") or {}
    start, end = (
        fresh.get("start_reward", found["start"]["reward"]),
        fresh.get("attacked_reward", found["best"]["reward"]),
    )
    drop = 1 - end / start if start else 0.0
    low = drop  # one fresh episode, or an attack.json from before they were kept one by one: the point alone
    ours = f"{start:.1f} -> {end:.1f} ({-100 * drop:+.1f}%"
    if len(fresh.get("start_rewards") or []) >= 2 and start:
        # each episode's drop over the start's mean reward (their mean is `drop`), resampled by episode:
        # the two models play the same episodes; the denominator is held at the start's mean
        each = paired_difference(fresh["start_rewards"], fresh["attacked_rewards"])
        low, high = each.low / start, each.high / start
        ours += f" [{-100 * high:+.1f}%, {-100 * low:+.1f}%], paired over {each.n} fresh episodes)"
    else:
        ours += ") on fresh episodes"
    ours += f", LL {found['start']['ll']:.4f} -> {found['best']['ll']:.4f}"
    verdict = REPRODUCED if drop >= share / 2 and low > 0 else DIRECTION if low > 0 else NOT_REPRODUCED
    return Section(
        [Finding("Sec. 4.3", "Sec. 4.3: the CMA-ES attack lowers the reward, not the LL", where, ours, verdict)],
        [folder / "fig7.png"],
    )


def reweight(folder: Path) -> Section:
    found = read_json(folder / "reweight.json")
    cells = list(found["cells"].values())
    # "improves performance for smaller dataset sizes": the paper's log-grid runs S = 10 ... 2500, so its
    # smaller half is S <= sqrt(10 x 2500) = 158 (at S = 10 alone no model of the CPU scale learns anything)
    sizes = sorted({cell["size"] for cell in cells if cell["size"] <= SMALL_S} or {min(cell["size"] for cell in cells)})
    section = Section(figures=[folder / "fig8.png"])
    names = sorted({k for cell in cells for k, v in cell.items() if isinstance(v, dict) and "minus_baseline" in v})
    for name in names:
        small = [cell[name]["minus_baseline"] for cell in cells if cell["size"] in sizes and name in cell]
        gains = sum(d["low"] > 0 for d in small)
        losses = sum(d["high"] < 0 for d in small)
        best = max(small, key=lambda d: d["mean"])
        verdict = (
            REPRODUCED
            if gains and not losses
            else DIRECTION
            if not losses and sum(d["mean"] > 0 for d in small) > len(small) / 2
            else NOT_REPRODUCED
        )
        section.findings.append(
            Finding(
                "Fig. 8",
                f"Fig. 8: {name} re-weighting minus NLL, reward at S = {', '.join(map(str, sizes))}",
                PAPER["fig8"],
                f"gain in {gains}, loss in {losses} of {len(small)} cells; "
                f"best {interval(best['mean'], best['low'], best['high'], 1)} (paired)",
                verdict,
            )
        )
    return section


def fit_sweep(folder: Path) -> Section:
    found = read_json(folder / "training_study.json")
    parts, early = [], 0
    for kind, entry in found.items():
        loss = next((k for k in entry if k.startswith("best_val_") and k.endswith("_epoch")), None)
        if loss is None:
            continue
        early += entry["best_reward_epoch"] < entry[loss]
        parts.append(f"{kind}: reward {entry['best_reward_epoch']}, {loss[9:-6]} {entry[loss]}")
    verdict = REPRODUCED if parts and early > len(parts) / 2 else NOT_REPRODUCED
    ours = f"best epochs, {'; '.join(parts)} (reward first in {early} of {len(parts)} types)"
    return Section(
        [Finding("Fig. 4-5", "Fig. 4-5: the reward peaks before the validation loss", PAPER["fig4"], ours, verdict)],
        [folder / "training_study.png"],
    )


def babbling(folder: Path) -> Section:
    found = read_json(folder / "babbling.json")
    final: dict[int, dict[str, float]] = {}
    for run in found["runs"]:
        size, seed = run["name"][1:].split("_s")
        final.setdefault(int(size), {})[seed] = float(np.mean(run["rewards"][-3:]))
    small, large = final[min(final)], final[max(final)]
    seeds = sorted(set(small) & set(large))
    diff = paired_difference([small[s] for s in seeds], [large[s] for s in seeds])
    head = f"mean of the last 3 trials, S {min(final)} minus S {max(final)}"
    if len(seeds) > 1:
        ours = f"{head}: {interval(diff.mean, diff.low, diff.high, 1)} (paired, {plural(len(seeds), 'seed')})"
        verdict = change_verdict(diff.mean, diff.low)
    else:
        ours = f"{head}: {diff.mean:+.1f} (1 seed, no interval)"
        verdict = DIRECTION if diff.mean > 0 else NOT_REPRODUCED
    return Section(
        [Finding("App. A", "App. A: off-task initial data slows PETS", PAPER["fig10"], ours, verdict)],
        [folder / "fig10.png"],
    )


def pairs(folder: Path) -> Section:
    found = read_json(folder / "pairs.json")
    settings = found.get("settings", {})
    if not found["pairs"]:
        ours = "no pair"
    else:
        p = max(found["pairs"], key=lambda p: abs(p["reward"][0] - p["reward"][1]))
        rewards, ll = p["reward"], p["ll"]
        ours = f"{plural(len(found['pairs']), 'pair')}; widest: rewards {rewards[0]:.1f} vs {rewards[1]:.1f}"
        ours += f" at LL {ll[0]:.3f} vs {ll[1]:.3f}"
    ours += f" (LL within {settings.get('tolerance')}, rewards >= {settings.get('min_gap')} apart)"
    figures = sorted(folder.glob("pair_*.png"))
    verdict = REPRODUCED if found["pairs"] else NOT_REPRODUCED
    return Section([Finding("App. E", "App. E: similar LL, different reward", PAPER["app_e"], ours, verdict)], figures)


def goals(folder: Path) -> Section:
    found = read_json(folder / "goals.json")
    rho, summary = found["coverage_vs_reward"], found["summary"]
    rewards = ", ".join(f"{r['goal']:+.1f}: {r['reward']:.1f}" for r in summary)
    ours = (
        f"rho(coverage, reward) {interval(rho['spearman'], rho['low'], rho['high'])} "
        f"over {plural(len(summary), 'goal')}; "
        f"the last model's reward per goal {rewards}"
    )
    verdict = change_verdict(rho["spearman"], rho["low"])
    figures = [folder / "fig12.png", folder / "fig13.png"]
    effect = "App. B: the models generalise as far as their data"
    return Section([Finding("App. B", effect, PAPER["app_b"], ours, verdict)], figures)


def pets_sweep(folder: Path) -> Section:
    """The PETS runs a population is made of: how far they learnt (context for Fig. 3, not an effect)."""
    found = read_json(folder / "summary.json")
    task = get_task(saved_env(folder))
    section = Section(figures=[folder / "curves.png"])
    for kind, one in found.items():
        final = one["final_rewards"]
        mean = mean_interval(final)
        spread = f" [{mean.low:.1f}, {mean.high:.1f}] over runs" if len(final) > 2 else ""
        ours = (
            f"{kind}: mean of each run's last {one['final_trials']} trials {', '.join(f'{r:.1f}' for r in final)} "
            f"(mean {mean.mean:.1f}{spread}); best {max(one['best_rewards']):.1f}"
        )
        effect = f"PETS {short_name(task)}: how far the population's runs learnt"
        section.findings.append(Finding("PETS runs", effect, "(context, not an effect)", ours, CONTEXT))
    return section


READERS = {
    "pets_sweep": pets_sweep,
    "goals": goals,
    "population": population,
    "attack": attack,
    "reweight": reweight,
    "fit_sweep": fit_sweep,
    "babbling": babbling,
    "pairs": pairs,
}
