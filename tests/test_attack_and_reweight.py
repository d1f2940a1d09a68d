"""The experiments of Sec. 4.3, Sec. 5 and Appendices D-E on tiny configs: the CMA-ES attack (its LL
bound, a kill and the resume), the reweight grid, model pairs, online re-weighting in PETS, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import kill_when

from objmm.data import TransitionDataset
from objmm.envs import get_task
from objmm.experiments.attack_cma import Head
from objmm.objectives.distance_weighted import trajectory_rewards
from objmm.training import DynamicsModule
from objmm.training.metrics import dataset_metrics
from objmm.training.saved_models import load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = "objmm/PETSCartpole-v0"
ATTACK = ["attack", "--config", str(ROOT / "configs" / "attack" / "tiny.yaml")]
REWEIGHT = ["reweight", "--config", str(ROOT / "configs" / "reweight" / "tiny.yaml")]
PAIRS = ["pairs", "--config", str(ROOT / "configs" / "pairs" / "tiny.yaml")]
POPULATION = ["population", "--config", str(ROOT / "configs" / "population" / "tiny.yaml")]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory, objmm_in, accelerator):
    """A pets_tiny run and a 3-generation attack on its last model, with the run's data as the expert
    (both on --device)."""
    where = tmp_path_factory.mktemp("attack")
    objmm_in(
        where,
        ["pets", "--config", str(ROOT / "configs" / "pets" / "tiny.yaml"), *accelerator],
        [*ATTACK, *accelerator, "--attack.expert", "runs/pets_tiny/dataset", "--attack.out", "reference"]
        + ["--attack.report_ll", "{same_rows: runs/pets_tiny/dataset}"],
    )
    return where


def history(out: Path) -> list[dict]:
    return [
        {k: v for k, v in h.items() if k != "seconds"} for h in json.loads((out / "attack.json").read_text())["history"]
    ]


def test_the_attack_never_keeps_a_candidate_below_the_ll_bound(attacked):
    summary = json.loads((attacked / "reference" / "attack.json").read_text())
    bound, steps = summary["start"]["ll"], summary["history"]
    assert len(steps) == 3
    # sigma 0.05 sends some candidates below the bound: the test sees the bound at work
    assert any(h["inside_bound"] < h["popsize"] for h in steps)
    assert all(h["member_ll"] >= bound for h in steps if "member_ll" in h)
    # the bound is soft in the ranking: candidates just below it were run too
    assert sum(h["run"] for h in steps) > sum(h["inside_bound"] for h in steps)
    # the saved attacked model has the LL the summary says, at or above the bound, on the validation
    # rows and on the reported ones
    module, info = load_model(attacked / "reference" / "attacked.pt")
    validation = TransitionDataset.load(attacked / "runs" / "pets_tiny" / "dataset")
    ll = dataset_metrics(module.model, validation, None, "random", 4096, 0)["paper_ll"]
    assert ll == pytest.approx(summary["best"]["ll"], abs=1e-5) and ll >= bound
    assert summary["best"]["report_ll"]["same_rows"] == pytest.approx(ll, abs=1e-5)
    assert summary["start"]["report_ll"]["same_rows"] == pytest.approx(bound, abs=1e-5)
    for figure in ("fig6.png", "fig7.png"):
        assert (attacked / "reference" / figure).stat().st_size > 10_000
    # the fresh check keeps each episode, the two models on the same ones, and its means are theirs
    fresh = summary["fresh_episodes"]
    assert len(fresh["start_rewards"]) == len(fresh["attacked_rewards"]) == 2
    assert fresh["start_reward"] == pytest.approx(np.mean(fresh["start_rewards"]))
    assert fresh["attacked_reward"] == pytest.approx(np.mean(fresh["attacked_rewards"]))


def test_a_killed_attack_resumes_at_its_last_finished_generation(attacked, tmp_path, objmm_in, accelerator):
    work = tmp_path / "work"
    shutil.copytree(attacked / "runs", work / "runs")
    args = [*ATTACK, *accelerator, "--attack.out", "killed"]
    summary = work / "killed" / "attack.json"
    kill_when(args, work, lambda: summary.exists() and bool(json.loads(summary.read_text())["history"]))
    done = len(history(work / "killed"))
    assert 1 <= done <= 3
    objmm_in(work, args)
    # the resumed attack took the same path as the uninterrupted one
    assert history(work / "killed") == history(attacked / "reference")


def test_more_check_episodes_rerun_only_the_check(attacked, tmp_path, objmm_in, accelerator, capsys):
    work = tmp_path / "work"
    shutil.copytree(attacked / "runs", work / "runs")
    shutil.copytree(attacked / "reference", work / "checked")
    capsys.readouterr()
    same = ["--attack.report_ll", "{same_rows: runs/pets_tiny/dataset}"]  # as the reference's
    objmm_in(work, [*ATTACK, *accelerator, *same, "--attack.out", "checked", "--attack.check_episodes", "3"])
    assert "resuming" in capsys.readouterr().out  # the finished search's state was accepted
    summary = json.loads((work / "checked" / "attack.json").read_text())
    reference = json.loads((attacked / "reference" / "attack.json").read_text())
    assert history(work / "checked") == history(attacked / "reference")  # no generation ran again
    assert summary["best"]["reward"] == reference["best"]["reward"]
    fresh = summary["fresh_episodes"]
    assert len(fresh["start_rewards"]) == len(fresh["attacked_rewards"]) == 3
    assert fresh["start_reward"] == pytest.approx(np.mean(fresh["start_rewards"]))


def test_the_soft_penalty_lowers_the_reward_within_the_bound_on_a_constructed_case():
    """cma_generation on a head of 6 numbers whose "reward" and "LL" are known functions: the first
    five (mean columns) lower the reward and cost LL, the sixth (a log-variance column) wins up to
    0.25 of LL and moves no reward. The search must spend that slack: reward 100 -> below 0 within
    the bound, which neither the mean columns alone (any move costs LL) nor a search that ignored
    the bound would keep."""
    from types import SimpleNamespace

    from objmm.experiments.attack_cma import cma_generation, new_cma

    class Identity:
        def with_vector(self, x):
            return np.asarray(x)

    def ll(x):
        return 1.0 - 0.01 * np.sum(x[:5] ** 2) + 0.1 * x[5] - 0.01 * x[5] ** 2

    def rewards(xs, prefix=""):
        return np.array([100.0 + 10 * np.sum(x[:5]) for x in xs])

    np.random.seed(0)
    state = {"start": {"ll": 1.0, "reward": 100.0}, "history": [], "best": {"reward": 100.0, "ll": 1.0}}
    state["es"] = new_cma(np.zeros(6), 0.3, 10, 1, stds=np.array([1, 1, 1, 1, 1, 2.0]))
    settings = SimpleNamespace(penalty=300.0, generations=30)
    for _ in range(30):
        cma_generation(state, Identity(), ll, rewards, settings)
    best = state["best"]
    assert best["reward"] < 0 and best["ll"] >= 1.0
    assert ll(best["theta"]) == best["ll"] and rewards([best["theta"]])[0] == best["reward"]
    # soft: candidates below the bound were run and ranked by reward plus penalty
    assert sum(h["run"] for h in state["history"]) > sum(h["inside_bound"] for h in state["history"])


GRADIENT = ["--attack.method", "gradient", "--attack.gradient.steps", "6", "--attack.gradient.states", "16"]
GRADIENT += ["--attack.gradient.sequences", "8", "--attack.gradient.lr", "0.05"]


def test_the_gradient_attack_keeps_the_bound_lowers_its_surrogate_and_resumes(
    attacked, tmp_path, objmm_in, accelerator
):
    work = tmp_path / "work"
    shutil.copytree(attacked / "runs", work / "runs")
    args = [*ATTACK, *accelerator, *GRADIENT]
    objmm_in(work, [*args, "--attack.out", "straight"], [*args, "--attack.out", "resumed", "--attack.generations", "2"])
    objmm_in(work, [*args, "--attack.out", "resumed"])
    summary = json.loads((work / "straight" / "attack.json").read_text())
    bound, steps = summary["start"]["ll"], summary["history"]
    assert len(steps) == 3 and all(h["popsize"] == 1 for h in steps)
    assert all(h["member_ll"] >= bound for h in steps if "member_ll" in h)
    module, _ = load_model(work / "straight" / "attacked.pt")
    validation = TransitionDataset.load(work / "runs" / "pets_tiny" / "dataset")
    assert dataset_metrics(module.model, validation, None, "random", 4096, 0)["paper_ll"] >= bound
    # without the log-variance refit, the attacked head's log-variance columns are the start model's
    objmm_in(work, [*args, "--attack.out", "no_refit", "--attack.generations", "1"]
             + ["--attack.gradient.refit_logvar", "false"])  # fmt: skip
    start, _ = load_model(sorted((work / "runs" / "pets_tiny" / "models").glob("trial_*.pt"))[-1])
    kept = {"straight": module, "no_refit": load_model(work / "no_refit" / "attacked.pt")[0]}
    outputs = start.model.net.out_dim
    for name, attacked_module in kept.items():
        same = torch.equal(
            attacked_module.model.net.head.weight[..., outputs:], start.model.net.head.weight[..., outputs:]
        )
        assert same == (name == "no_refit"), name
    # the search spent steps on the surrogate (how far it fell: the next test)
    assert sum(h["surrogate_steps"] for h in steps) > 0 and "surrogate" in summary["start"]
    # two generations, then a third from the saved state: the same path as three at once
    assert history(work / "resumed") == history(work / "straight")


def test_the_gradient_search_measures_the_ll_the_attack_measures(attacked, device):
    from objmm.experiments.attack_gradient import GradientSearch, GradientSettings

    run = attacked / "runs" / "pets_tiny"
    module, _ = load_model(sorted((run / "models").glob("trial_*.pt"))[-1], device)
    validation = TransitionDataset.load(run / "dataset")
    measured = dataset_metrics(module.model, validation, None, "random", 4096, 0)["paper_ll"]
    env = {"id": CARTPOLE, "kwargs": {}}
    settings = GradientSettings(steps=1, lr=1e-4, states=8, sequences=4, temperature=0.1, floor=1e-8)
    search = GradientSearch(module.model, validation, env, 5, measured, settings, 0, device)
    assert search.current_ll() == pytest.approx(measured, abs=1e-5)
    # whitened: with the log-variance held, a step u in U costs |u|^2 / 2 of LL (to second order;
    # the floor, 1e-8 here, takes a little off), whatever its direction
    mean_weight, mean_bias = search.mean_head()
    logvar = (search.logvar_weight.detach(), search.logvar_bias.detach())
    base = search.ll(mean_weight, mean_bias, *logvar).item()
    for direction in torch.randn(3, *search.u.shape, generator=torch.Generator().manual_seed(0)):
        u = 0.1 * direction.to(search.u) / direction.norm()
        with torch.no_grad():
            search.u.copy_(u)
            plus = search.ll(*search.mean_head(), *logvar).item()
            search.u.copy_(-u)
            minus = search.ll(*search.mean_head(), *logvar).item()
        assert -(plus + minus - 2 * base) == pytest.approx(0.01, rel=0.05)
    with torch.no_grad():
        search.u.zero_()
    # the surrogate's gradient goes through the whole rollout: it matches a central difference
    search.surrogate(*search.mean_head()).backward()
    direction = torch.randn(search.u.shape, generator=torch.Generator().manual_seed(1)).to(search.u)
    direction /= direction.norm()
    with torch.no_grad():
        search.u.copy_(1e-3 * direction)
        plus = search.current_surrogate()
        search.u.copy_(-1e-3 * direction)
        minus = search.current_surrogate()
        search.u.zero_()
    assert (plus - minus) / 2e-3 == pytest.approx((search.u.grad * direction).sum().item(), rel=0.02)
    search.u.grad = None
    # and a small step (no bound to hold: every step is the surrogate's) goes down it
    search.bound, start = -1e9, search.current_surrogate()
    record = search.generation()
    assert record["surrogate_steps"] == 1 and record["surrogate"] < start - 1e-5
    # the head it hands over is the head it measured
    moved = Head(module).with_vector(Head.flat(*search.head()))
    assert dataset_metrics(moved.model, validation, None, "random", 4096, 0)["paper_ll"] == pytest.approx(
        search.current_ll(), abs=1e-4
    )


def test_bad_attack_input_is_one_line(attacked, tmp_path, monkeypatch, error_of):
    monkeypatch.chdir(tmp_path)
    deterministic = DynamicsModule(members=1, width=8, depth=1, probabilistic=False)
    save_model(tmp_path / "d.pt", deterministic)
    message = error_of(
        *ATTACK, "--attack.model", "d.pt", "--attack.validation", str(attacked / "runs/pets_tiny/dataset")
    )
    assert "d.pt is a deterministic model (D or DE): it has no likelihood" in message and "\n" not in message
    (tmp_path / "empty_run").mkdir()
    message = error_of(*ATTACK, "--attack.model", "empty_run")
    assert (
        message == "objmm: error: attack.model: empty_run holds no saved models (models/trial_NN.pt, or a fit's *.ckpt)"
    )
    # the expert is checked before the search, not after it
    run = attacked / "runs/pets_tiny"
    message = error_of(
        *ATTACK, "--attack.model", str(run), "--attack.validation", str(run / "dataset"), "--attack.expert", "no/expert"
    )
    assert message == "objmm: error: attack.expert: no expert dataset at no/expert (make one with `objmm data expert`)"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("attack_state.pkl"))
    message = error_of(*ATTACK, "--attack.gradient.lr", "0")
    assert message == (
        "objmm: error: attack.gradient: lr, temperature and floor must be positive and margin not negative, "
        "got 0.0, 1.0, 0.0001, 0.01"
    )


def test_the_reweight_grid_and_its_resume(in_tmp, objmm_in, capsys, accelerator, pets_tiny):
    pets_tiny(in_tmp)  # its dataset is the expert
    objmm_in(in_tmp, [*REWEIGHT, *accelerator])
    table = json.loads(Path("runs/reweight_tiny/reweight.json").read_text())
    assert set(table["cells"]) == {"S10_eps2", "S40_eps2", "S10_eps15.66", "S40_eps15.66"}
    for cell in table["cells"].values():
        assert cell["rows"] <= cell["size"] and cell["rows"] <= cell["pool_within_bound"]
        for name in ("nll", "distance", "reward"):
            rewards = cell[name]["rewards"]  # [pairs: 2 sets x 1 model][episodes]
            assert len(rewards) == 2 and len(rewards[0]) == 2 and cell[name]["dataset"] == [0, 1]
            assert cell[name]["model_means"] == pytest.approx([sum(r) / 2 for r in rewards])
        # the weights do something: from the same initial weights, sets and episodes, the weighted
        # models plan other episodes than the NLL's, and their weights vary over the rows
        distance = cell["distance"]
        assert distance["rewards"] != cell["nll"]["rewards"] and distance["effective_fraction"] < 0.99
        assert cell["nll"]["effective_fraction"] is None
        # each objective's paired difference to the baseline, with its interval
        diff = distance["minus_baseline"]
        means = [a - b for a, b in zip(distance["model_means"], cell["nll"]["model_means"], strict=True)]
        assert diff["mean"] == pytest.approx(sum(means) / 2) and diff["low"] <= diff["mean"] <= diff["high"]
        assert diff["n"] == 2 and diff["clusters"] == 2
    assert Path("runs/reweight_tiny/fig8.png").stat().st_size > 10_000
    capsys.readouterr()
    objmm_in(in_tmp, [*REWEIGHT, *accelerator])  # all cells done: nothing is trained again
    out = capsys.readouterr().out
    assert "4 cells (4 already in" in out and "reweight: cell" not in out
    assert json.loads(Path("runs/reweight_tiny/reweight.json").read_text()) == table


def test_reweight_near_several_references_resamples_them(in_tmp, objmm_in, error_of, pets_tiny):
    """references R > 1: set d is drawn near the expert's trajectory d mod R and the distance objective
    weighs it by that trajectory; the interval's clusters are the references, not the sets."""
    import torch

    from objmm.experiments.reweight import near_reference

    pets_tiny(in_tmp)
    one_cell = ["--reweight.sizes", "[10]", "--reweight.bounds", "[2.0]", "--reweight.datasets", "4"]
    objmm_in(in_tmp, [*REWEIGHT, *one_cell, "--reweight.references", "2", "--reweight.out", "refs"])
    cell = json.loads(Path("refs/reweight.json").read_text())["cells"]["S10_eps2"]
    for name in ("nll", "distance", "reward"):
        assert cell[name]["reference"] == [0, 1, 0, 1] and cell[name]["dataset"] == [0, 1, 2, 3]
    diff = cell["distance"]["minus_baseline"]
    assert diff["n"] == 4 and diff["clusters"] == 2 and diff["low"] <= diff["mean"] <= diff["high"]
    first, second = (
        torch.load(f"refs/{f}", weights_only=False)["distances"] for f in ("pool_distances.pt", "pool_distances_1.pt")
    )
    assert first.shape == second.shape and not torch.equal(first, second)  # d* to two trajectories
    distance = {"class_path": "objmm.objectives.DistanceWeighted", "init_args": {"expert": "e", "kernel": "linear"}}
    assert near_reference(distance, 1)["init_args"] == {"expert": "e", "kernel": "linear", "first_trajectory": 1}
    assert near_reference({"class_path": "objmm.objectives.GaussianNLL"}, 1) == {
        "class_path": "objmm.objectives.GaussianNLL"
    }
    message = error_of(*REWEIGHT, "--reweight.references", "3")  # 2 sets a cell
    assert message == (
        "objmm: error: reweight.references (3) must not exceed reweight.datasets (2): "
        "each reference needs a set drawn near it"
    )
    from objmm.data import random_rollouts

    random_rollouts("objmm/PETSCartpole-v0", 2, 5).save("other_expert")
    other = (
        "{d: {class_path: objmm.objectives.DistanceWeighted, init_args: {expert: other_expert}}, "
        "n: {class_path: objmm.objectives.GaussianNLL}}"
    )
    refs = ["--reweight.references", "2", "--reweight.objectives", other, "--reweight.baseline", "n"]
    assert error_of(*REWEIGHT, *refs).startswith(
        "objmm: error: reweight.objectives.d: with reweight.references > 1 its expert must be reweight.expert "
        "(runs/pets_tiny/dataset)"
    )


@pytest.mark.slow
def test_reweight_cells_on_ray_give_the_same_table(in_tmp, objmm_in, pets_tiny):
    pytest.importorskip("ray")
    pets_tiny(in_tmp)
    objmm_in(in_tmp, REWEIGHT)
    ray = ["--reweight.out", "on_ray", "--reweight.ray.address", "local", "--reweight.ray.num_cpus", "2"]
    objmm_in(in_tmp, [*REWEIGHT, *ray])
    here = json.loads(Path("runs/reweight_tiny/reweight.json").read_text())["cells"]
    there = json.loads(Path("on_ray/reweight.json").read_text())["cells"]
    strip = ("seconds", "train_seconds")
    assert {k: {f: v for f, v in c.items() if f not in strip} for k, c in here.items()} == {
        k: {f: v for f, v in c.items() if f not in strip} for k, c in there.items()
    }


def test_a_reweight_objective_of_another_env_is_one_line(in_tmp, error_of):
    from objmm.data import random_rollouts

    random_rollouts("objmm/PETSHalfCheetah-v0", 1, 5).save("cheetah")
    random_rollouts("objmm/PETSCartpole-v0", 1, 5).save("expert")
    objective = (
        "{distance: {class_path: objmm.objectives.DistanceWeighted, init_args: {expert: cheetah}}, "
        "nll: {class_path: objmm.objectives.GaussianNLL}}"
    )
    message = error_of(*REWEIGHT, "--reweight.expert", "expert", "--reweight.objectives", objective)
    assert "DistanceWeighted.expert cheetah is an expert dataset of objmm/PETSHalfCheetah-v0" in message
    assert "\n" not in message and not Path("runs/reweight_tiny/reweight.json").exists()
    online = (
        "{nll: {class_path: objmm.objectives.GaussianNLL}, online: {class_path: objmm.objectives.DistanceWeighted}}"
    )
    message = error_of(*REWEIGHT, "--reweight.expert", "expert", "--reweight.objectives", online)
    assert message.startswith("objmm: error: reweight.objectives.online: DistanceWeighted needs an expert here")


def test_pairs_of_similar_ll_and_their_plans(in_tmp, objmm_in, error_of, pets_tiny):
    pets_tiny(in_tmp)
    objmm_in(in_tmp, POPULATION, PAIRS)
    found = json.loads(Path("runs/pairs_tiny/pairs.json").read_text())["pairs"]
    assert len(found) == 1
    pair = found[0]
    assert pair["reward"][0] >= pair["reward"][1] and len(set(pair["models"])) == 2
    assert Path(pair["figure"]).stat().st_size > 10_000
    # two different models plan different actions along the expert trajectory, within the action range
    task = get_task(CARTPOLE)
    assert 0 < pair["mean_action_gap"] <= task.action_high - task.action_low
    message = error_of(*PAIRS, "--pairs.tolerance", "0", "--pairs.min_gap", "1000")
    assert message.startswith("objmm: error: no two of the 3 models have random/random/paper_ll within 0.0")
    message = error_of(*PAIRS, "--pairs.table", "nothing.json")
    assert (
        message
        == "objmm: error: pairs.table: no population table at nothing.json (objmm population writes population.json)"
    )
    from objmm.data import random_rollouts

    random_rollouts("objmm/PETSHalfCheetah-v0", 1, 5).save("cheetah")
    message = error_of(*PAIRS, "--pairs.expert", "cheetah")
    assert message == (
        "objmm: error: pairs.expert cheetah is an expert dataset of objmm/PETSHalfCheetah-v0, "
        "but the model is for objmm/PETSCartpole-v0"
    )
    message = error_of(*PAIRS, "--pairs.expert", "no/expert")
    assert message == "objmm: error: pairs.expert: no expert dataset at no/expert (make one with `objmm data expert`)"


def test_online_reweighting_in_pets_follows_the_best_episode(in_tmp, objmm_in):
    objmm_in(
        in_tmp,
        ["pets", "--config", str(ROOT / "configs" / "pets" / "tiny.yaml"),
         "--model.objective", "objmm.objectives.DistanceWeighted"],
    )  # fmt: skip
    state = json.loads(Path("runs/pets_tiny/state.json").read_text())
    assert state["finished_trials"] == 3
    last = state["history"][-1]
    # the trained loss is the weighted NLL, not the plain one
    assert last["train_data/loss"] != pytest.approx(last["train_data/nll"])
    module, _ = load_model(Path("runs/pets_tiny/models/trial_02.pt"))
    objective = module.objective
    assert type(objective).__name__ == "DistanceWeighted" and objective.expert is None
    # the reference it trained with is rebuilt at fit start: the best episode of the rows trained on
    dataset = TransitionDataset.load("runs/pets_tiny/dataset").head(last["rows"] - 30)
    train, _ = dataset.split(0.9, seed=0, by="rows")
    objective.on_fit_start(train)
    _, rewards = trajectory_rewards(train, get_task(CARTPOLE), {})
    assert len(rewards) == 4 and objective.reference.shape[0] == 27  # 2 initial + 2 trials; 0.9 of 30 steps
    assert objective.reference_rewards == [pytest.approx(float(rewards.max()))]
    assert torch.isfinite(torch.tensor(last["train_data/loss"]))
