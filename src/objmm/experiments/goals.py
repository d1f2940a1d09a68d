"""`objmm goals`: a PETS run's models on other tasks, without retraining (the paper's App. B, Fig. 11-13).

    objmm goals --config configs/goals/cartpole.yaml

The run learnt the cartpole with the pole's tip over x = 0. For each goal `x_goal` (the paper: -1.0,
-0.5, -0.2, -0.1, 0.1, 0.2, 0.5 and 1.0), every saved model of the run plans `episodes` episodes
whose reward, the planner's and the env's, is that goal's. Models go `stack` at a time through one
network, with common random numbers (`rewards.stacked_rewards`): every model and goal meets the
same starts and planner samples. The paper: the models generalise to goals near 0 and less with
distance, as far as the training data covers the cart's x.

`goals.json` keeps each finished goal, so the same command after a kill goes on with the goals it
lacks (goals may be added later). At the end: `fig12.png`, the reward of each trial's model per
goal (negative goals left, positive right, 0 in both); `fig13.png`, the histogram of the cart's x
in the run's data after the trials of `histogram_trials`, the goals marked; and per goal, the last
model's reward with its interval over episodes beside the share of the run's rows within `near` of
the goal (the coverage the paper reads the rewards against), with Spearman's rho between the two.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from objmm.data import TransitionDataset
from objmm.envs import get_task
from objmm.errors import ObjmmError, require_at_least_one
from objmm.experiments.framework import ExperimentRun, ResultsFile, run_experiment
from objmm.experiments.pets_files import load_state
from objmm.experiments.rewards import Evaluation, block_rewards
from objmm.planning import CEMConfig
from objmm.plots import plt, save_figure_atomically
from objmm.stats import correlation, mean_interval
from objmm.training.saved_models import find_models, load_model

TABLE, REWARDS_FIGURE, COVERAGE_FIGURE = "goals.json", "fig12.png", "fig13.png"


@dataclass
class GoalsSettings:
    """The `goals:` section.

    Args:
        run: a PETS run (its `models/` and `dataset/`), e.g. Fig. 11's.
        goals: the cart positions the pole's tip must be over (the run learnt 0).
        episodes: real episodes per model and goal.
        episode_steps: steps of each episode (default: the task's).
        cem: the planner (Table 1's by default).
        stack: models planned at once.
        trials: the trials whose models plan (1 is the first; default: every trial's), e.g.
            `[1, 3, 5, 10, 20]` where a machine cannot afford all (each is episodes x goals episodes).
        histogram_trials: the trials after which Fig. 13 shows the data's x.
        near: a row covers a goal if its cart x is within this of it.
        out: goals.json and the figures.
    """

    run: str = "runs/pets_cartpole"
    goals: list[float] = field(default_factory=lambda: [-1.0, -0.5, -0.2, -0.1, 0.0, 0.1, 0.2, 0.5, 1.0])
    episodes: int = 3
    episode_steps: int | None = None
    cem: CEMConfig = field(default_factory=lambda: CEMConfig(horizon=25, population=400, elites=40, iterations=5))
    stack: int = 20
    trials: list[int] | None = None
    histogram_trials: list[int] = field(default_factory=lambda: [1, 5, 20])
    near: float = 0.1
    out: str = "runs/goals"

    def __post_init__(self):
        require_at_least_one("goals", episodes=self.episodes, stack=self.stack, episode_steps=self.episode_steps)
        if not self.goals:
            raise ObjmmError("goals.goals is empty; give at least one x_goal")
        if self.near <= 0:
            raise ObjmmError(f"goals.near must be > 0, not {self.near}")


def goal_name(goal: float) -> str:
    return f"x_goal={goal:+.2f}"


class GoalsRun(ExperimentRun):
    section, settings_class, resume_file = "goals", GoalsSettings, TABLE
    settings: GoalsSettings

    def prepare(self) -> None:
        s = self.settings
        task = get_task(self.env["id"])
        if "x_goal" not in inspect.signature(task.reward_fn).parameters:
            raise ObjmmError(f"goals: {self.env['id']} has no x_goal in its reward; Appendix B is the cartpole's")
        self.history = load_state(Path(s.run))["history"]
        models = find_models(s.run, "goals.run")
        self.trials = s.trials or list(range(1, len(models) + 1))
        outside = [t for t in self.trials if not 1 <= t <= len(models)]
        if outside:
            raise ObjmmError(f"goals.trials: {s.run} has the models of trials 1-{len(models)}, not of {outside}")
        self.models = [models[t - 1] for t in self.trials]
        self.data = TransitionDataset.load(Path(s.run) / "dataset")
        self.x = self.data.data["obs"][:, task.obs_names.index("x") if "x" in task.obs_names else 0].numpy()
        settings = {k: v for k, v in vars(s).items() if k not in ("goals", "histogram_trials", "near", "out")}
        self.table = ResultsFile(self.out / TABLE, {**settings, "models": [str(m) for m in self.models]}, "goals")

    def run(self) -> dict:
        s = self.settings
        evaluation = Evaluation(s.episodes, s.episode_steps, s.cem)
        todo = [g for g in s.goals if goal_name(g) not in self.table]
        modules = [load_model(m, self.device)[0] for m in self.models] if todo else []
        for i, goal in enumerate(todo, 1):
            env = {"id": self.env["id"], "kwargs": {**self.env["kwargs"], "x_goal": goal}}
            where = f"goals: {goal_name(goal)} ({i}/{len(todo)}), "
            rewards = block_rewards(modules, evaluation, s.stack, env, self.seed, self.device, where).tolist()
            self.table.add({"name": goal_name(goal), "goal": goal, "rewards": rewards})
            print(f"goals: {goal_name(goal)}: last model's reward {np.mean(rewards[-1]):.1f}", flush=True)
        return self.finish()

    def finish(self) -> dict:
        s = self.settings
        pieces = sorted((p for p in self.table.pieces.values() if p["goal"] in s.goals), key=lambda p: p["goal"])
        rows = self.history[-1]["rows"] if self.history else len(self.x)
        summary = []
        for p in pieces:
            last = mean_interval(p["rewards"][-1], seed=self.seed)
            coverage = float(np.mean(np.abs(self.x[:rows] - p["goal"]) <= s.near))
            summary.append(
                {"goal": p["goal"], "reward": last.mean, "low": last.low, "high": last.high, "coverage": coverage}
            )
        rho = correlation([r["coverage"] for r in summary], [r["reward"] for r in summary], "spearman", seed=self.seed)
        self.table.add(summary=summary, coverage_vs_reward={"spearman": rho.rho, "low": rho.low, "high": rho.high})
        figures = {
            "fig12": rewards_figure(pieces, self.trials, self.out / REWARDS_FIGURE),
            "fig13": coverage_figure(self.x, self.history, s.histogram_trials, s.goals, self.out / COVERAGE_FIGURE),
        }
        for r in summary:
            spread = f" [{r['low']:.1f}, {r['high']:.1f}] (last model, {s.episodes} episodes)"
            print(
                f"  {goal_name(r['goal'])}: reward {r['reward']:.1f}"
                + (spread if s.episodes > 1 else " (last model, one episode: no interval)")
                + f", {100 * r['coverage']:.1f}% of the run's rows within {s.near}",
                flush=True,
            )
        self.publish(
            f"{len(pieces)} goals, Spearman rho(coverage, reward) {rho.rho:+.2f} [{rho.low:+.2f}, {rho.high:+.2f}]",
            [self.out / TABLE, *figures.values()],
            figures,
            metrics={f"goals/{goal_name(r['goal'])}/reward": r["reward"] for r in summary},
            tables={"summary": summary},
        )
        return {"summary": summary, "spearman": rho.rho}


def rewards_figure(pieces: list[dict], trials: list[int], path: Path) -> Path:
    """Fig. 12: each trial's model's mean reward per goal, negative goals left and positive right
    (`trials`: the trial of each model, in the order of the pieces' rewards)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(pieces)))
    for ax, sign, title in ((axes[0], -1, "x_goal <= 0"), (axes[1], 1, "x_goal >= 0")):
        for p, colour in zip(pieces, colours, strict=True):
            if p["goal"] * sign < 0:
                continue
            mean = np.mean(p["rewards"], axis=1)
            ax.plot(trials, mean, marker=".", color=colour, label=f"{p['goal']:+.1f}")
        ax.set(title=title, xlabel="trial (whose model plans)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(title="x_goal", fontsize="small")
    axes[0].set_ylabel("episode reward (higher is better)")
    fig.suptitle("Appendix B: a PETS run's models on other goals, without retraining")
    return save_figure_atomically(fig, path)


def coverage_figure(x: np.ndarray, history: list[dict], trials: list[int], goals: list[float], path: Path) -> Path:
    """Fig. 13: the cart's x in the run's data after each of `trials`, the goals marked."""
    shown = [t for t in trials if t <= len(history)]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(4 * max(1, len(shown)), 3.2), sharex=True, squeeze=False)
    bins = np.linspace(min(x.min(), min(goals)) - 0.1, max(x.max(), max(goals)) + 0.1, 60)
    for ax, trial in zip(axes[0], shown, strict=False):
        ax.hist(x[: history[trial - 1]["rows"]], bins=bins, color="tab:blue")
        for goal in goals:
            ax.axvline(goal, color="tab:red", lw=0.8, ls=":")
        ax.set(title=f"after trial {trial}", xlabel="cart x (dotted: the goals)")
    axes[0][0].set_ylabel("rows")
    return save_figure_atomically(fig, path)


def main(argv: list[str]) -> None:
    run_experiment("goals", __doc__.splitlines()[0], argv, GoalsRun)
