"""`objmm attack`: lower a model's reward without lowering its likelihood (the paper's Sec. 4.3, Fig. 6-7).

    objmm attack --config configs/attack/cartpole.yaml

Starting from a trained probabilistic model (the paper: a P model from the last trial of a PETS
cartpole run, reward 176, LL 4.827 on its on-policy data), CMA-ES searches the model's last
layer (weights and biases of every member) to minimise the controller's mean real reward over
`episodes` episodes. A candidate whose LL on the validation set (the paper's convention,
`paper_ll`, the mean over rows) is below the start model's gets a fitness of `penalty` x (1 + the
LL it lost), worse than any reward, and is never kept as the best; its episodes are not run.

`attack.method: gradient` searches the same head by a first-order method instead: a surrogate of
the planner's choice, descended through the model's own rollouts, with the LL held at the bound
(`attack_gradient.py`). A generation is then `attack.gradient.steps` steps and one candidate, kept
under the same rule.

Why separable CMA-ES (`cma`'s `CMA_diagonal: True`): the head has thousands of parameters (P 200
wide: 1608; the paper's 500 wide: 4008; PE: 5x that). Full CMA-ES keeps an n x n covariance,
O(n^2) memory and time per sample, and learns it at a rate of about 1/n^2 per generation, so over
the few dozen generations an attack can afford it stays near its initial isotropic shape; the
diagonal variant learns n variances at a rate of about 1/n, at O(n) a sample (Ros & Hansen 2008).

Each generation's candidates inside the bound are evaluated K (`stack`) at a time through one
batched network, every candidate on the same episode starts and the same planner samples (common
random numbers, as in `objmm population`), so the differences in fitness are the models'.

After every generation the CMA-ES state, the random state and the path so far are written
atomically to `attack_state.pkl` (and `attack.json`); the same command after a kill goes on from
the last finished generation. At the end: `attacked.pt` (the best candidate within the bound),
`fig7.png` (the path of each generation's best member in LL-reward space) and, with an expert
dataset, `fig6.png` (the actions the original and the attacked model plan along an expert trajectory).
"""

from __future__ import annotations

import copy
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from objmm import atomic
from objmm.cli import ExperimentRun, run_experiment
from objmm.data import load_source
from objmm.errors import ObjmmError, require_at_least_one
from objmm.experiments.along_expert import along_expert, expert_trajectory, plot_models_along_expert
from objmm.experiments.attack_gradient import GradientSearch, GradientSettings
from objmm.experiments.rewards import stacked_rewards
from objmm.planning import CEMConfig
from objmm.plots import plot_attack_path
from objmm.seeding import derive_seed
from objmm.training.metrics import dataset_metrics
from objmm.training.saved_models import load_model, save_model

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
        sigma: CMA-ES's initial step, in the units of the head's weights.
        episodes: real episodes per candidate (the paper: 5).
        stack: candidates per batched network (K).
        episode_steps: steps per episode (default: the task's).
        cem: the planner (Table 1: cartpole 25/400/40/5).
        penalty: the fitness of a candidate below the LL bound, times (1 + the LL it lost): larger
            than any reward.
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
    episodes: int = 5
    stack: int = 8
    episode_steps: int | None = None
    cem: CEMConfig = field(default_factory=CEMConfig)
    penalty: float = 1e6
    gradient: GradientSettings = field(default_factory=GradientSettings)
    out: str = "runs/attack"

    def __post_init__(self):
        require_at_least_one(
            "attack",
            generations=self.generations,
            popsize=self.popsize,
            episodes=self.episodes,
            stack=self.stack,
            episode_steps=self.episode_steps,
        )
        if not self.model:
            raise ObjmmError("attack.model is empty; name a saved model (trial_NN.pt) or a PETS run directory")
        if not self.validation:
            raise ObjmmError("attack.validation is empty; name the dataset whose LL must not fall (on-policy data)")
        if not self.sigma > 0 or not self.penalty > 0:
            raise ObjmmError(f"attack.sigma and attack.penalty must be positive, got {self.sigma} and {self.penalty}")


def model_file(entry: str) -> Path:
    """A saved model file, or the last trial's model of a PETS run directory."""
    path = Path(entry)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted((path / "models").glob("trial_*.pt")) or sorted(path.glob("trial_*.pt"))
        if found:
            return found[-1]
        raise ObjmmError(f"attack.model: {path} holds no saved per-trial models (models/trial_NN.pt)")
    raise ObjmmError(f"attack.model: {path} does not exist")


class Head:
    """The last layer of a model as one flat vector (weights, then biases), and models with another
    vector in its place."""

    def __init__(self, module):
        self.module = module
        layer = module.model.net.layers[-1]
        self.shapes = [layer.weight.shape, layer.bias.shape]

    def vector(self) -> np.ndarray:
        layer = self.module.model.net.layers[-1]
        return self.flat(layer.weight, layer.bias)

    @staticmethod
    def flat(weight: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
        """A head's weight and bias as one vector (weights, then biases)."""
        return torch.cat([weight.detach().flatten(), bias.detach().flatten()]).double().cpu().numpy()

    def with_vector(self, theta: np.ndarray):
        """A copy of the module whose last layer holds `theta`."""
        module = copy.deepcopy(self.module)
        layer = module.model.net.layers[-1]
        flat = torch.as_tensor(np.asarray(theta), dtype=layer.weight.dtype, device=layer.weight.device)
        n = layer.weight.numel()
        with torch.no_grad():
            layer.weight.copy_(flat[:n].view(self.shapes[0]))
            layer.bias.copy_(flat[n:].view(self.shapes[1]))
        return module


class AttackRun(ExperimentRun):
    section, settings_class, resume_file = "attack", AttackSettings, STATE
    settings: AttackSettings

    def load(self) -> None:
        s = self.settings
        self.model_path = model_file(s.model)
        module, _ = load_model(self.model_path, self.device)
        if module.hparams["env_id"] != self.env["id"]:
            raise ObjmmError(
                f"{self.model_path} is a model of {module.hparams['env_id']}, but env.id is {self.env['id']}"
            )
        if not module.model.probabilistic:
            raise ObjmmError(
                f"{self.model_path} is a deterministic model (D or DE): it has no likelihood for the attack "
                "to keep; attack a P or PE model"
            )
        self.validation = load_source(s.validation, self.env["id"], seed=self.seed, **self.env["kwargs"])
        # read now, so that a bad expert is named before the search, not after it
        self.trajectory = expert_trajectory(s.expert, self.env["id"], "attack.expert") if s.expert else None
        self.module, self.head = module.eval(), Head(module)

    def plain_settings(self) -> dict:
        """What makes two attacks the same (one's state can go on as the other; generations may grow)."""
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
            "episodes": s.episodes,
            "episode_steps": s.episode_steps,
            "cem": asdict(s.cem),
            "penalty": s.penalty,
        }

    # ----------------------------------------------------------------- a candidate's LL and reward
    def ll(self, module) -> float:
        metrics = dataset_metrics(module.model, self.validation, None, "random", 4096, self.seed)
        return float(metrics["paper_ll"])

    def rewards(self, modules: list, prefix: str = "", episodes: str = "attack") -> np.ndarray:
        """Mean real reward of each model, K at a time, on the same episodes and planner samples
        (`episodes` names them: the search's, or fresh ones to check the result)."""
        s = self.settings
        settings = {"episodes": s.episodes, "cem": asdict(s.cem), "episode_steps": s.episode_steps}
        out, blocks = [], -(-len(modules) // s.stack)
        for i in range(0, len(modules), s.stack):
            block = modules[i : i + s.stack]
            where = f"{prefix}block {i // s.stack + 1}/{blocks}, episode " if prefix else ""
            returns = stacked_rewards(block, settings, self.env, derive_seed(self.seed, episodes), self.device, where)
            out.extend(returns.mean(axis=1).tolist())
        return np.array(out)

    # ----------------------------------------------------------------- the search
    def start(self) -> dict:
        settings = self.plain_settings()
        path = self.out / STATE
        if path.exists():
            try:
                state = pickle.loads(path.read_bytes())
            except Exception as error:
                raise ObjmmError(f"{path} is damaged ({type(error).__name__}); move it away to start again") from None
            if state["settings"] != settings:
                raise ObjmmError(
                    f"{path} holds an attack with other settings; use another attack.out "
                    "(or the same settings, only attack.generations may change, to go on)"
                )
            np.random.set_state(state["numpy_state"])  # cma samples from numpy's global generator
            print(f"attack: resuming {path} after generation {len(state['history'])}", flush=True)
        else:
            theta = self.head.vector()
            ll = self.ll(self.module)
            print(f"attack: {self.model_path}, {theta.size} head parameters; measuring the start model", flush=True)
            reward = float(self.rewards([self.module], "  start model: ")[0])
            print(f"attack: start model: reward {reward:.1f}, LL {ll:.4f} (the bound)", flush=True)
            best = {"theta": theta, "reward": reward, "ll": ll, "generation": 0}
            state = {"settings": settings, "start": {"reward": reward, "ll": ll}, "best": best, "history": []}
            if self.settings.method == "cma":
                state["es"] = self.new_cma(theta)
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

    def new_cma(self, theta: np.ndarray):
        import cma

        options = {
            "CMA_diagonal": True,
            "seed": derive_seed(self.seed, "cma") % (2**31 - 1) + 1,
            "verbose": -9,
            "tolfun": 0,
            "tolx": 0,
            "tolflatfitness": 10**9,
        }
        if self.settings.popsize:
            options["popsize"] = self.settings.popsize
        return cma.CMAEvolutionStrategy(theta, self.settings.sigma, options)

    def generation(self, state: dict) -> dict:
        return self.cma_generation(state) if self.settings.method == "cma" else self.gradient_generation(state)

    def gradient_generation(self, state: dict) -> dict:
        """`gradient.steps` first-order steps; their head is the generation's one candidate."""
        s = self.settings
        g, bound = len(state["history"]) + 1, state["start"]["ll"]
        t0 = time.perf_counter()
        record = {"generation": g, **self.search.generation()}
        theta = self.head.flat(*self.search.head())
        module = self.head.with_vector(theta)
        ll = self.ll(module)  # measured as every CMA-ES candidate is: the search's own LL does not decide
        record.update(popsize=1, inside_bound=int(ll >= bound))
        if ll >= bound:
            reward = float(self.rewards([module], f"  generation {g}/{s.generations}: ")[0])
            record.update(member_reward=reward, member_ll=ll)
            if reward < state["best"]["reward"]:
                state["best"] = {"theta": theta, "reward": reward, "ll": ll, "generation": g}
        record.update(best_reward=state["best"]["reward"], best_ll=state["best"]["ll"])
        record["seconds"] = time.perf_counter() - t0
        state["history"].append(record)
        return record

    def cma_generation(self, state: dict) -> dict:
        s, es = self.settings, state["es"]
        g, bound = len(state["history"]) + 1, state["start"]["ll"]
        t0 = time.perf_counter()
        candidates = es.ask()
        modules = [self.head.with_vector(x) for x in candidates]
        lls = np.array([self.ll(m) for m in modules])
        inside = np.flatnonzero(lls >= bound)
        rewards = np.full(len(candidates), np.nan)
        if len(inside):
            prefix = f"  generation {g}/{s.generations}, {len(inside)} candidates: "
            rewards[inside] = self.rewards([modules[i] for i in inside], prefix)
        # below the bound: worse than any reward, and the further below the worse
        fitness = np.where(lls >= bound, rewards, s.penalty * (1 + np.maximum(bound - lls, 0)))
        es.tell(candidates, fitness.tolist())
        record = {
            "generation": g,
            "inside_bound": int(len(inside)),
            "popsize": len(candidates),
            "sigma": float(es.sigma),
            "seconds": time.perf_counter() - t0,
        }
        if len(inside):
            i = inside[np.argmin(rewards[inside])]
            record.update(member_reward=float(rewards[i]), member_ll=float(lls[i]))
            if rewards[i] < state["best"]["reward"]:
                state["best"] = {
                    "theta": np.asarray(candidates[i]),
                    "reward": float(rewards[i]),
                    "ll": float(lls[i]),
                    "generation": g,
                }
        record.update(best_reward=state["best"]["reward"], best_ll=state["best"]["ll"])
        state["history"].append(record)
        return record

    def save(self, state: dict) -> None:
        state["numpy_state"] = np.random.get_state()
        if self.settings.method == "gradient":
            state["search"] = self.search.state_dict()
        self.out.mkdir(parents=True, exist_ok=True)
        payload = pickle.dumps(state)
        atomic.write_atomically(self.out / STATE, lambda tmp: Path(tmp).write_bytes(payload))
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
        self.load()
        state = self.start()
        self.save(state)
        s = self.settings
        for _ in range(len(state["history"]), s.generations):
            record = self.generation(state)
            self.save(state)
            print(f"attack: generation {record['generation']}/{s.generations}: {describe(record)}", flush=True)
            if self.logger:
                self.logger.log_metrics({f"attack/{k}": v for k, v in record.items()}, step=record["generation"])
        return self.finish(state)

    def finish(self, state: dict) -> dict:
        start, best = state["start"], state["best"]
        attacked = self.head.with_vector(best["theta"])
        save_model(
            self.out / "attacked.pt",
            attacked,
            attacked_from=str(self.model_path),
            **{k: v for k, v in best.items() if k != "theta"},
        )
        path = [h for h in state["history"] if "member_reward" in h]
        who = "CMA-ES's best member per generation" if self.settings.method == "cma" else "Each generation's candidate"
        figures = [
            plot_attack_path(
                [h["generation"] for h in path],
                [h["member_ll"] for h in path],
                [h["member_reward"] for h in path],
                (start["ll"], start["reward"]),
                start["ll"],
                path=self.out / "fig7.png",
                title=f"{who}: reward {start['reward']:.0f} -> {best['reward']:.0f}",
            )
        ]
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
        fresh = self.rewards([self.module, attacked], "  check on fresh episodes: ", "attack-check")
        state["fresh_episodes"] = {"start_reward": float(fresh[0]), "attacked_reward": float(fresh[1])}
        summary = self.summary(state)
        atomic.write_json(self.out / SUMMARY, summary)
        if self.logger:
            import wandb

            self.logger.experiment.log({f"attack/{p.stem}": wandb.Image(str(p)) for p in figures})
        print(
            f"attack: reward {start['reward']:.1f} -> {best['reward']:.1f} ({100 * summary['reward_drop']:.0f}% lower) "
            f"at LL {best['ll']:.4f} (start {start['ll']:.4f}), generation {best['generation']}; on fresh episodes "
            f"{fresh[0]:.1f} -> {fresh[1]:.1f}; "
            f"-> {self.out / 'attacked.pt'}, {self.out / SUMMARY}, " + ", ".join(str(p) for p in figures)
        )
        return summary


def describe(record: dict) -> str:
    """One generation's progress line."""
    member = (
        f"best member reward {record['member_reward']:.1f} (LL {record['member_ll']:.4f})"
        if "member_reward" in record
        else "no member within the bound"
    )
    search = f"sigma {record['sigma']:.4g}" if "sigma" in record else f"surrogate {record['surrogate']:.2f}"
    return (
        f"{record['inside_bound']}/{record['popsize']} within the LL bound, {member}; "
        f"best so far {record['best_reward']:.1f} (LL {record['best_ll']:.4f}), {search}, {record['seconds']:.0f} s"
    )


def main(argv: list[str]) -> None:
    run_experiment("attack", __doc__.splitlines()[0], argv, AttackRun)
