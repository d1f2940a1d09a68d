"""`objmm attack`: lower a model's reward without lowering its likelihood (the paper's Sec. 4.3, Fig. 6-7).

    objmm attack --config configs/attack/cartpole.yaml

Starting from a trained probabilistic model (the paper: a P model from the last trial of a PETS
cartpole run, reward 176, LL 4.827 on its on-policy data), CMA-ES searches the model's last
layer (weights and biases of every member) to minimise the controller's mean real reward over
`episodes` episodes. A candidate whose LL on the validation set (the paper's convention,
`paper_ll`, the mean over rows) is below the start model's gets a fitness of `penalty` x (1 + the
LL it lost), worse than any reward, and is never kept as the best; its episodes are not run.

The search is `cma`'s separable CMA-ES (`attack_cma.py`). `attack.method: gradient` searches the
same head by a first-order method instead: a surrogate of the planner's choice, descended through
the model's own rollouts, with the LL held at the bound (`attack_gradient.py`). A generation is
then `attack.gradient.steps` steps and one candidate, kept under the same rule.

After every generation the CMA-ES state, the random state and the path so far are written
atomically to `attack_state.pkl` (and `attack.json`); the same command after a kill goes on from
the last finished generation. At the end: `attacked.pt` (the best candidate within the bound),
`fig7.png` (the path of each generation's best member in LL-reward space) and, with an expert
dataset, `fig6.png` (the actions the original and the attacked model plan along an expert trajectory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from objmm import atomic
from objmm.data import load_source
from objmm.errors import ObjmmError, require_at_least_one
from objmm.experiments.along_expert import along_expert, expert_trajectory, plot_models_along_expert
from objmm.experiments.attack_cma import Head, cma_generation, describe_generation, new_cma
from objmm.experiments.attack_gradient import GradientSearch, GradientSettings, gradient_generation
from objmm.experiments.framework import ExperimentRun, ResultsFile, run_experiment
from objmm.experiments.rewards import Evaluation, block_rewards
from objmm.planning import CEMConfig
from objmm.plots import plt, save_figure_atomically
from objmm.seeding import derive_seed
from objmm.training.metrics import dataset_metrics
from objmm.training.saved_models import check_env, find_models, load_model, save_model

STATE = "attack_state.pkl"
SUMMARY = "attack.json"


@dataclass
class AttackSettings:
    """The `attack:` section.

    Args:
        model: the model to attack: a saved model file (`trial_NN.pt`) or a PETS run directory
            (its last trial's model).
        validation: the dataset whose LL must not fall (the paper: the run's on-policy data; a saved
            dataset or a generator spec).
        expert: an expert dataset: the plans of the original and the attacked model along its first
            trajectory become fig6.png (optional).
        method: `cma` (the paper's search: separable CMA-ES) or `gradient` (a first-order search on a
            surrogate of the planner's choice; `attack_gradient.py`).
        generations: CMA-ES generations (or rounds of `gradient.steps` steps).
        popsize: candidates per generation (default: cma's 4 + 3 ln n).
        sigma: CMA-ES's initial step for the head's mean columns, in the units of the head's weights.
        logvar_sigma: the initial step for its log-variance columns (default: `sigma` times the ratio
            of the two groups' weight standard deviations, the same step relative to each group).
        episodes: real episodes per candidate (the paper: 5).
        check_episodes: fresh episodes, never seen by the search, on which the start and the attacked
            model are compared at the end (default: `episodes`); more give the drop a tighter paired
            interval. Not part of the search: changing it re-runs only the check.
        stack: candidates per batched network (K).
        episode_steps: steps per episode (default: the task's).
        cem: the planner (Table 1: cartpole 25/400/40/5).
        penalty: reward per unit of LL below the bound, added to a candidate's fitness (the soft
            bound; 1e6 ranks every candidate below the bound by its LL alone).
        report_ll: name -> dataset: LLs reported for the start and the attacked model (not the bound).
        gradient: the first-order search's settings (with `method: gradient`).
        out: where the state, the attacked model and the figures go.
    """

    model: str = ""
    validation: str = ""
    expert: str | None = None
    method: Literal["cma", "gradient"] = "cma"
    generations: int = 30
    popsize: int | None = None
    sigma: float = 0.01
    logvar_sigma: float | None = None
    episodes: int = 5
    check_episodes: int | None = None
    stack: int = 8
    episode_steps: int | None = None
    cem: CEMConfig = field(default_factory=CEMConfig)
    penalty: float = 100.0
    report_ll: dict[str, str] = field(default_factory=dict)
    gradient: GradientSettings = field(default_factory=GradientSettings)
    out: str = "runs/attack"

    def __post_init__(self):
        require_at_least_one(
            "attack",
            generations=self.generations,
            popsize=self.popsize,
            episodes=self.episodes,
            check_episodes=self.check_episodes,
            stack=self.stack,
            episode_steps=self.episode_steps,
        )
        if not self.model:
            raise ObjmmError("attack.model is empty; name a saved model (trial_NN.pt) or a PETS run directory")
        if not self.validation:
            raise ObjmmError("attack.validation is empty; name the dataset whose LL must not fall (on-policy data)")
        if not self.sigma > 0 or not self.penalty > 0 or not (self.logvar_sigma is None or self.logvar_sigma > 0):
            raise ObjmmError(
                "attack.sigma, attack.logvar_sigma and attack.penalty must be positive, "
                f"got {self.sigma}, {self.logvar_sigma} and {self.penalty}"
            )


class AttackRun(ExperimentRun):
    section, settings_class, resume_file = "attack", AttackSettings, STATE
    settings: AttackSettings

    def prepare(self) -> None:
        s = self.settings
        self.model_path = find_models(s.model, "attack.model")[-1]  # a PETS run: its last trial's model
        module, _ = load_model(self.model_path, self.device)
        check_env(module, self.model_path, self.env)
        if not module.model.probabilistic:
            raise ObjmmError(
                f"{self.model_path} is a deterministic model (D or DE): it has no likelihood for the attack "
                "to keep; attack a P or PE model"
            )
        self.validation = load_source(s.validation, self.env["id"], seed=self.seed, **self.env["kwargs"])
        self.reported = {
            name: load_source(source, self.env["id"], seed=self.seed, **self.env["kwargs"])
            for name, source in s.report_ll.items()
        }
        # read now, so that a bad expert is named before the search, not after it
        self.trajectory = expert_trajectory(s.expert, self.env["id"], "attack.expert") if s.expert else None
        self.module, self.head = module.eval(), Head(module)
        mean_std, logvar_std = self.head.group_stds()
        self.logvar_sigma = s.logvar_sigma or s.sigma * logvar_std / mean_std
        self.results = ResultsFile(
            self.out / STATE, self.plain_settings(), "history", "generation", "attack.out", "attack.generations"
        )

    def plain_settings(self) -> dict:
        """What makes two attacks the same (one's state can go on as the other; generations may grow, and
        check_episodes, which only the check after the search reads, may change)."""
        s = self.settings
        method = {"method": s.method, "gradient": asdict(s.gradient)} if s.method == "gradient" else {}
        return {
            **method,
            "model": str(self.model_path),
            "validation": s.validation,
            "env": self.env,
            "seed": self.seed,
            "popsize": s.popsize,
            "sigma": s.sigma,
            "logvar_sigma": self.logvar_sigma,
            "episodes": s.episodes,
            "episode_steps": s.episode_steps,
            "cem": asdict(s.cem),
            "penalty": s.penalty,
            "report_ll": s.report_ll,
        }

    # ----------------------------------------------------------------- a candidate's LL and reward
    def ll(self, module, dataset=None) -> float:
        dataset = self.validation if dataset is None else dataset
        metrics = dataset_metrics(module.model, dataset, None, "random", 4096, self.seed)
        return float(metrics["paper_ll"])

    def reported_lls(self, module) -> dict[str, float]:
        return {name: self.ll(module, dataset) for name, dataset in self.reported.items()}

    def episode_rewards(
        self, modules: list, prefix: str = "", episodes: str = "attack", count: int | None = None
    ) -> np.ndarray:
        """Each model's real reward per episode [models, count (default: `episodes`)], all on the same
        episodes and planner samples (`episodes` names them: the search's, or fresh ones to check the
        result)."""
        seed, s = derive_seed(self.seed, episodes), self.settings
        evaluation = replace(Evaluation.of(s), episodes=count or s.episodes)
        return block_rewards(modules, evaluation, s.stack, self.env, seed, self.device, prefix)

    def rewards(self, modules: list, prefix: str = "", episodes: str = "attack") -> np.ndarray:
        """Each model's mean real reward over `episode_rewards`."""
        return self.episode_rewards(modules, prefix, episodes).mean(axis=1)

    # ----------------------------------------------------------------- the search
    def start(self) -> dict:
        if len(self.results) or self.results.extra:
            state = {"settings": self.results.settings, "history": list(self.results.pieces.values())}
            state.update(self.results.extra)
            np.random.set_state(state["numpy_state"])  # cma samples from numpy's global generator
            print(f"attack: resuming {self.results.path} after generation {len(state['history'])}", flush=True)
        else:
            theta = self.head.vector()
            ll = self.ll(self.module)
            print(f"attack: {self.model_path}, {theta.size} head parameters; measuring the start model", flush=True)
            reward = float(self.rewards([self.module], "  start model: ")[0])
            print(f"attack: start model: reward {reward:.1f}, LL {ll:.4f} (the bound)", flush=True)
            best = {"theta": theta, "reward": reward, "ll": ll, "generation": 0}
            start = {"reward": reward, "ll": ll, "report_ll": self.reported_lls(self.module)}
            state = {"settings": self.results.settings, "start": start, "best": best, "history": []}
            if self.settings.method == "cma":
                s = self.settings
                stds = np.where(self.head.logvar_columns(), self.logvar_sigma / s.sigma, 1.0)
                state["es"] = new_cma(theta, s.sigma, s.popsize, derive_seed(self.seed, "cma"), stds)
        if self.settings.method == "gradient":
            s = self.settings
            self.search = GradientSearch(
                self.module.model, self.validation, self.env, s.cem.horizon, state["start"]["ll"], s.gradient,
                derive_seed(self.seed, "attack-decoys"), self.device,
            )  # fmt: skip
            if "search" in state:
                self.search.load_state_dict(state["search"])
            else:
                state["start"]["surrogate"] = self.search.current_surrogate()
                print(f"attack: the start model's surrogate {state['start']['surrogate']:.2f}", flush=True)
        return state

    def generation(self, state: dict) -> dict:
        if self.settings.method == "cma":
            return cma_generation(state, self.head, self.ll, self.rewards, self.settings)
        return gradient_generation(state, self.search, self.head, self.ll, self.rewards, self.settings)

    def save(self, state: dict) -> None:
        state["numpy_state"] = np.random.get_state()
        if self.settings.method == "gradient":
            state["search"] = self.search.state_dict()
        self.results.add(*state["history"], **{k: v for k, v in state.items() if k not in ("settings", "history")})
        atomic.write_json(self.out / SUMMARY, self.summary(state))

    def summary(self, state: dict) -> dict:
        start, best = state["start"], state["best"]
        return {
            "settings": state["settings"],
            "start": start,
            "best": {k: v for k, v in best.items() if k != "theta"},
            "reward_drop": 1 - best["reward"] / start["reward"] if start["reward"] else float("nan"),
            "fresh_episodes": state.get("fresh_episodes"),
            "history": state["history"],
        }

    def run(self) -> dict:
        state = self.start()
        self.save(state)
        s = self.settings
        for _ in range(len(state["history"]), s.generations):
            record = self.generation(state)
            self.save(state)
            print(f"attack: {describe_generation(record, s.generations)}", flush=True)
            if self.logger:
                self.logger.log_metrics({f"attack/{k}": v for k, v in record.items()}, step=record["generation"])
        return self.finish(state)

    def finish(self, state: dict) -> dict:
        start, best = state["start"], state["best"]
        attacked = self.head.with_vector(best["theta"])
        found = {k: v for k, v in best.items() if k != "theta"}
        save_model(self.out / "attacked.pt", attacked, attacked_from=str(self.model_path), **found)
        path = [h for h in state["history"] if "member_reward" in h]
        who = "CMA-ES's best member per generation" if self.settings.method == "cma" else "Each generation's candidate"
        figure = attack_path_figure(
            [h["generation"] for h in path],
            [h["member_ll"] for h in path],
            [h["member_reward"] for h in path],
            (start["ll"], start["reward"]),
            (best["ll"], best["reward"]),
            start["ll"],
            title=f"{who}: reward {start['reward']:.1f} -> {best['reward']:.1f} (the attacked model)",
        )
        figures = [save_figure_atomically(figure, self.out / "fig7.png")]
        if self.trajectory is not None:
            found = along_expert(
                [self.module, attacked], self.trajectory, self.settings.cem, self.env["kwargs"], self.seed, self.device
            )
            figures.append(
                plot_models_along_expert(
                    ["original", "attacked"],
                    found,
                    self.env["id"],
                    self.out / "fig6.png",
                    "Planned actions and predicted states along an expert trajectory",
                )
            )
            atomic.write_json(self.out / "along_expert.json", {k: v.tolist() for k, v in found.items()})
        # the search saw the same episodes every generation; fresh ones say whether the drop holds
        # per episode too: the two models play the same episodes, so the drop's interval is paired
        each = self.episode_rewards(
            [self.module, attacked], "  check on fresh episodes: ", "attack-check", self.settings.check_episodes
        )
        fresh = each.mean(axis=1)
        state["fresh_episodes"] = {
            "start_reward": float(fresh[0]),
            "attacked_reward": float(fresh[1]),
            "start_rewards": each[0].tolist(),
            "attacked_rewards": each[1].tolist(),
        }
        state["best"]["report_ll"] = self.reported_lls(attacked)
        summary = self.summary(state)
        atomic.write_json(self.out / SUMMARY, summary)
        reported = "".join(
            f"; LL on {name} {start['report_ll'][name]:.4f} -> {ll:.4f}" for name, ll in best["report_ll"].items()
        )
        self.publish(
            f"reward {start['reward']:.1f} -> {best['reward']:.1f} ({100 * summary['reward_drop']:.0f}% lower) "
            f"at LL {best['ll']:.4f} (start {start['ll']:.4f}), generation {best['generation']}; on fresh episodes "
            f"{fresh[0]:.1f} -> {fresh[1]:.1f}{reported}",
            [self.out / "attacked.pt", self.out / SUMMARY, *figures],
            {p.stem: p for p in figures},
        )
        return summary


def attack_path_figure(
    generations: Sequence[int],
    lls: Sequence[float],
    rewards: Sequence[float],
    start: tuple[float, float],
    attacked: tuple[float, float],
    bound: float,
    title="",
):
    """Fig. 7: the best member of each CMA-ES generation (of those with a member within the bound)
    in LL-reward space, from the start model on, the generation as colour; the attacked model (the
    best within the bound) marked; the LL bound the attack may not cross as a dashed line."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([start[0], *lls], [start[1], *rewards], color="grey", lw=0.8, zorder=1)
    points = ax.scatter(lls, rewards, c=generations, cmap="viridis", s=22, zorder=2)
    ax.scatter([start[0]], [start[1]], marker="*", s=140, color="tab:red", zorder=3, label="start")
    if attacked != start:
        ax.scatter([attacked[0]], [attacked[1]], marker="X", s=90, color="black", zorder=3, label="attacked model")
    ax.axvline(bound, ls="--", color="tab:red", lw=0.8, label="LL bound (the start's)")
    fig.colorbar(points, ax=ax, label="generation")
    ax.set_xlabel("LL (paper's convention) on the validation set (higher: likelier)")
    ax.set_ylabel("mean episode reward (the attack lowers it)")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title, fontsize="small")
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> None:
    run_experiment("attack", __doc__.splitlines()[0], argv, AttackRun)
