"""The model population (Fig. 3): rho and its interval, K models stacked, the results table that
survives a kill, Ray, and bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import histories, kill_when
from scipy import stats

from objmm.cli import main
from objmm.data import load_source
from objmm.experiments.rewards import Evaluation, stacked_rewards
from objmm.models import DynamicsModel, StackedDynamics
from objmm.planning import CEMConfig
from objmm.stats import clustered_correlation, correlation, correlation_change, paired_difference
from objmm.training import DynamicsModule

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = "objmm/PETSCartpole-v0"
POPULATION = ["population", "--config", str(ROOT / "configs" / "population" / "tiny.yaml")]
#: Anscombe's first set: Pearson 0.816, Spearman 0.818 (Anscombe 1973)
ANSCOMBE_X = [10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5]
ANSCOMBE_Y = [8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68]


def test_rho_and_its_interval_are_scipys():
    pearson = correlation(ANSCOMBE_X, ANSCOMBE_Y, "pearson", resamples=500, seed=3)
    spearman = correlation(ANSCOMBE_X, ANSCOMBE_Y, "spearman", resamples=500, seed=3)
    assert pearson.rho == pytest.approx(0.81642, abs=1e-5) and spearman.rho == pytest.approx(0.81818, abs=1e-5)
    for found, statistic in ((pearson, stats.pearsonr), (spearman, stats.spearmanr)):
        reference = stats.bootstrap(
            (np.array(ANSCOMBE_X, float), np.array(ANSCOMBE_Y)),
            lambda x, y, f=statistic: f(x, y).statistic,
            paired=True,
            vectorized=False,
            n_resamples=500,
            method="percentile",
            rng=np.random.default_rng(3),
        ).confidence_interval
        assert (found.low, found.high) == pytest.approx((reference.low, reference.high), abs=1e-12)
        assert found.low < found.rho < found.high and found.n == 11
    # a diverged model's NaN LL is left out, not allowed to make rho NaN
    assert correlation([*ANSCOMBE_X, np.nan], [*ANSCOMBE_Y, 3.0], resamples=100).n == 11


def test_a_clustered_interval_counts_runs_not_models_and_a_paired_one_pairs():
    # 5 runs of 10 models each, every model of a run the same point: 5 independent points, not 50
    rng = np.random.default_rng(0)
    x5, y5 = rng.normal(size=5), rng.normal(size=5)
    x, y, runs = np.repeat(x5, 10), np.repeat(y5, 10), np.repeat(np.arange(5), 10)
    by_model = correlation(x, y, resamples=1000, seed=1)
    by_run = clustered_correlation(x, y, runs, resamples=1000, seed=1)
    assert by_run.rho == pytest.approx(by_model.rho) == pytest.approx(stats.pearsonr(x5, y5).statistic)
    assert by_run.high - by_run.low > 1.5 * (by_model.high - by_model.low)
    # one point per run: the same interval width as over models, up to resampling noise
    one = clustered_correlation(ANSCOMBE_X, ANSCOMBE_Y, np.arange(11), resamples=2000, seed=3)
    plain = correlation(ANSCOMBE_X, ANSCOMBE_Y, resamples=2000, seed=3)
    assert one.high - one.low == pytest.approx(plain.high - plain.low, abs=0.08)
    # paired: a constant difference has no spread; a difference of +-1 in 4 pairs straddles 0
    assert paired_difference([3, 4, 5], [1, 2, 3]) == type(paired_difference([1], [0]))(2.0, 2.0, 2.0, 3, 3)
    d = paired_difference([1, -1, 1, -1], [0, 0, 0, 0], clusters=[0, 0, 1, 1])
    assert d.mean == 0 and d.low == 0 == d.high and d.clusters == 2  # each cluster's mean is 0
    d = paired_difference([1, -1, 1, -1], [0, 0, 0, 0])
    assert d.low < 0 < d.high and d.clusters == 4


def test_the_change_in_rho_between_two_estimators_is_paired():
    rng = np.random.default_rng(0)
    y = rng.normal(size=40)
    noisy, runs = y + rng.normal(size=40), np.repeat(np.arange(8), 5)
    # the same estimator twice: no change, in every resample
    same = correlation_change(noisy, noisy, y, runs, resamples=300)
    assert same.mean == 0 and same.low == 0 == same.high and (same.n, same.clusters) == (40, 8)
    # an exact estimator against a noisy one: rho rises from Pearson's on the noisy one to 1
    gain = correlation_change(noisy, y, y, runs, resamples=300)
    assert gain.mean == pytest.approx(1 - stats.pearsonr(noisy, y).statistic)
    assert 0 < gain.low < gain.mean < gain.high
    # and back: the same size, the other sign; a NaN row is left out of all three
    loss = correlation_change(y, [*noisy[:-1], np.nan], y, runs, method="spearman", resamples=300)
    assert loss.mean < 0 and loss.high < 0 and loss.n == 39


def test_fig3_shows_the_bulk_and_counts_the_models_further_left():
    """As the paper's Fig. 3: one first model's LL far off does not squash the panel; it is counted."""
    from objmm.experiments.population_analysis import population_figure

    rng = np.random.default_rng(0)
    rows = [{"reward/mean": 150 + 10 * rng.normal(), "grid/random/paper_ll": 4 + rng.normal()} for _ in range(20)]
    rows.append({"reward/mean": 3.5, "grid/random/paper_ll": -2357.0})
    figure = population_figure(rows, ["grid"], [("paper_ll", "random")], [])
    ax = figure.axes[0]
    assert ax.get_xlim()[0] > -20  # the bulk (LL about 4) fills the panel
    assert any("1 model further left (LL down to -2.36e+03)" in t.get_text() for t in ax.texts)


def test_the_trend_line_is_total_least_squares():
    from objmm.experiments.population_analysis import total_least_squares

    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert total_least_squares(x, 2 * x + 1) == pytest.approx((2.0, 1.0))
    # unlike ordinary least squares, swapping the axes inverts the slope
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=200), rng.normal(size=200)
    y = x + 0.8 * y
    slope, _ = total_least_squares(x, y)
    inverse, _ = total_least_squares(y, x)
    assert slope * inverse == pytest.approx(1.0)
    assert slope > np.polyfit(x, y, 1)[0]  # OLS's slope is attenuated by the noise in y
    assert total_least_squares(np.array([1.0, np.nan]), np.array([1.0, 2.0])) is None


def trained_looking_models(count: int, members: int = 2, width: int = 16) -> list[DynamicsModel]:
    models = []
    for i in range(count):
        torch.manual_seed(i)
        model = DynamicsModel(CARTPOLE, members=members, width=width, depth=2)
        model.fit_normaliser(torch.randn(64, 4) * (1 + i), torch.rand(64, 1) * 6 - 3)
        models.append(model)
    return models


def test_a_stacked_model_predicts_what_it_predicts_alone(device):
    models = [model.to(device) for model in trained_looking_models(3)]
    obs, action = torch.randn(3 * 300, 4, device=device), torch.rand(3 * 300, 1, device=device) * 6 - 3
    stacked = StackedDynamics(models).to(device).predict_next(obs, action)
    alone = torch.cat([m.predict_next(o, a) for m, o, a in zip(models, obs.split(300), action.split(300), strict=True)])
    torch.testing.assert_close(stacked, alone, rtol=1e-6, atol=1e-6)
    other = DynamicsModel(CARTPOLE, members=2, width=32, depth=2)
    with pytest.raises(Exception, match="only models of one env and one architecture stack"):
        StackedDynamics([models[0], other])


def test_a_model_plans_the_same_episodes_in_a_stack_of_k_as_alone(device):
    modules = []
    for model in trained_looking_models(3):
        module = DynamicsModule(CARTPOLE, members=2, width=16, depth=2)
        module.model.load_state_dict(model.state_dict())
        modules.append(module)
    settings = Evaluation(episodes=2, episode_steps=15, cem=CEMConfig(horizon=4, population=12, elites=3, iterations=2))
    env = {"id": CARTPOLE, "kwargs": {}}
    stacked = stacked_rewards(modules, settings, env, seed=5, device=str(device))
    alone = np.concatenate([stacked_rewards([m], settings, env, seed=5, device=str(device)) for m in modules])
    # on a GPU a stack's matmuls may sum in another order than one model's: equal to float32 rounding
    np.testing.assert_allclose(stacked, alone, rtol=1e-9 if device.type == "cpu" else 1e-4)
    assert len(np.unique(stacked.round(6))) > 1  # the models (and episodes) do differ


@pytest.fixture(scope="module")
def pets_runs(tmp_path_factory, objmm_in, pets_tiny) -> Path:
    """A pets_tiny run (3 models) and the population table of its uninterrupted, in-process evaluation."""
    where = tmp_path_factory.mktemp("population")
    pets_tiny(where)
    objmm_in(where, [*POPULATION, "--population.out", "reference"])
    return where


def table(path: Path) -> dict[str, dict]:
    rows = json.loads((path / "population.json").read_text())["rows"]
    assert len({row["model"] for row in rows}) == len(rows)  # no model twice
    return {row["model"]: row for row in rows}


def same_numbers(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for model in a:
        for key, value in a[model].items():
            assert b[model][key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key


def test_the_population_table_figure_and_correlations(pets_runs):
    rows = table(pets_runs / "reference")
    assert len(rows) == 3 and {row["trial"] for row in rows.values()} == {0, 1, 2}
    row = next(iter(rows.values()))
    assert row["type"] == "PE" and row["run_seed"] == 0 and len(row["rewards"]) == 2
    for key in ("grid/random/paper_ll", "grid/trajectory/paper_ll_batch_median", "random/random/nll"):
        assert np.isfinite(row[key]), key
    # large batches: random rows, 30 a batch instead of 16 (same rows in all: the same mean LL)
    assert row["random/large/paper_ll"] == pytest.approx(row["random/random/paper_ll"])
    assert row["random/large/paper_ll_batch_median"] != row["random/random/paper_ll_batch_median"]
    # the grid is one-step data: its trajectory batches are its random batches (copied, not measured
    # again), while the rollouts' trajectory batches differ from their random ones
    assert row["grid/trajectory/paper_ll_batch_median"] == row["grid/random/paper_ll_batch_median"]
    assert row["random/trajectory/paper_ll_batch_median"] != row["random/random/paper_ll_batch_median"]
    found = json.loads((pets_runs / "reference" / "correlations.json").read_text())["correlations"]
    assert {(c["dataset"], c["ll"], c["method"]) for c in found} >= {
        ("grid", "trajectory/paper_ll_batch_median", "spearman")
    }
    # the paper's rho beside Fig. 3's estimator (Pearson, mean LL) on the grid; intervals by run too
    grid = [c for c in found if c["dataset"] == "grid"]
    assert [c["paper_rho"] for c in grid if "paper_rho" in c] == [-0.06]
    assert all(c["runs"] == 1 and "run_low" in c for c in found)
    assert (pets_runs / "reference" / "fig3.png").stat().st_size > 10_000
    # its W&B run: named after its folder, its whole config and its figure logged
    from objmm.experiments.framework.config import wandb_run_id

    (run,) = (pets_runs / "runs" / "wandb").glob(f"offline-run-*-{wandb_run_id('population', pets_runs / 'reference')}")
    log = next(run.glob("run-*.wandb")).read_bytes()
    assert b"reference" in log and b"bootstrap" in log and b"population/fig3" in log


def test_rho_among_the_models_that_solved_the_task(pets_runs, tmp_path, monkeypatch):
    """`solved_reward` adds rho over the models at that reward or more; the same command on a
    finished table only recomputes the summary (no model is planned again)."""
    monkeypatch.chdir(pets_runs)
    shutil.copytree(pets_runs / "reference", tmp_path / "solved")
    rewards = sorted(row["reward/mean"] for row in table(pets_runs / "reference").values())
    bar = rewards[1]  # the two best of the three models
    main([*POPULATION, "--population.out", str(tmp_path / "solved"), "--population.solved_reward", str(bar)])
    summary = json.loads((tmp_path / "solved" / "correlations.json").read_text())
    assert (
        summary["correlations"]
        == json.loads((pets_runs / "reference" / "correlations.json").read_text())["correlations"]
    )
    solved = summary["solved"]
    assert solved["min_reward"] == bar and solved["models"] == sum(r >= bar for r in rewards) == 2
    assert all(c["n"] <= 2 for c in solved["correlations"]) and solved["correlations"]
    # Appendix C, paired: rho with trajectory batches minus rho with random batches, same models
    rho = {(c["dataset"], c["ll"], c["method"]): c["rho"] for c in summary["correlations"]}
    for to, against in (("trajectory", "random"), ("large", "random"), ("trajectory", "large")):
        for change in summary[f"{to}_minus_{against}"]:
            key = (change["dataset"], f"{to}/paper_ll_batch_median", change["method"])
            expected = rho[key] - rho[(key[0], f"{against}/paper_ll_batch_median", key[2])]
            assert change["mean"] == pytest.approx(expected, nan_ok=True), (key, against)
        assert {c["dataset"] for c in summary[f"{to}_minus_{against}"]} == {"grid", "random"}


def test_a_killed_population_goes_on_with_no_model_lost_or_repeated(pets_runs, tmp_path, objmm_in):
    """SIGKILL once the first block's rows are written (K = 1: three blocks), then the same command."""
    work = tmp_path / "work"
    shutil.copytree(pets_runs / "runs", work / "runs")
    args = [*POPULATION, "--population.stack", "1", "--population.out", "killed"]
    kill_when(args, work, lambda: (work / "killed" / "population.json").exists())
    assert 1 <= len(table(work / "killed")) <= 3
    objmm_in(work, args)
    # K = 1 after a kill gives the numbers of K = 2 uninterrupted: a model plans alone as in a stack
    same_numbers(table(pets_runs / "reference"), table(work / "killed"))


def test_the_ray_path_writes_the_same_table(pets_runs, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.chdir(pets_runs)
    out = tmp_path / "on_ray"
    main([*POPULATION, "--population.out", str(out), "--population.ray.address", "local",
          "--population.ray.num_cpus", "2"])  # fmt: skip
    same_numbers(table(pets_runs / "reference"), table(out))


def test_a_model_s_own_pets_episode_counts_as_one_of_its_episodes(pets_runs, tmp_path, monkeypatch, error_of):
    """`run_episode`: the reward of the episode each trial planned with its model comes first, the
    population's episodes after it, the same as without it (common random numbers)."""
    monkeypatch.chdir(pets_runs)
    history = json.loads((pets_runs / "runs" / "pets_tiny" / "state.json").read_text())["history"]
    reference = table(pets_runs / "reference")
    main([*POPULATION, "--population.out", str(tmp_path / "own"), "--population.run_episode", "true"])
    for model, row in table(tmp_path / "own").items():
        own = history[row["trial"]]["reward/mean"]
        assert row["rewards"] == [own, *reference[model]["rewards"]]
        assert row["reward/mean"] == pytest.approx(np.mean([own, *reference[model]["rewards"]]))
    main([*POPULATION, "--population.out", str(tmp_path / "only"), "--population.run_episode", "true",
          "--population.episodes", "0"])  # fmt: skip
    assert [row["rewards"] for row in table(tmp_path / "only").values()] == [[h["reward/mean"]] for h in history]
    message = error_of(*POPULATION, "--population.out", str(tmp_path / "other"), "--population.run_episode", "true",
                       "--population.cem.population", "17")  # fmt: skip
    assert message.startswith("objmm: error: population.run_episode: runs/pets_tiny planned 30-step episodes with"), (
        message
    )
    assert len(message.splitlines()) == 1 and not (tmp_path / "other" / "population.json").exists()
    message = error_of(*POPULATION, "--population.out", str(tmp_path / "none"), "--population.episodes", "0")
    assert "population.episodes" in message and "at least 1" in message, message


def test_bad_population_input_is_one_line_and_writes_no_row(pets_runs, tmp_path, monkeypatch, error_of):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_run").mkdir()
    message = error_of(*POPULATION, "--population.models", "[empty_run]")
    assert message == (
        "objmm: error: population.models: empty_run holds no saved models (models/trial_NN.pt, or a fit's *.ckpt)"
    )
    load_source("random:1x5", "objmm/PETSHalfCheetah-v0").save(tmp_path / "cheetah")
    models = str(pets_runs / "runs" / "pets_tiny")
    message = error_of(*POPULATION, "--population.models", f"[{models}]", "--population.datasets", "{hc: cheetah}")
    assert message.startswith("objmm: error: dataset 'cheetah' was made for objmm/PETSHalfCheetah-v0"), message
    message = error_of(*POPULATION, "--population.models", f"[{models}]", "--population.stack", "0")
    assert "population.stack" in message and "at least 1" in message and len(message.splitlines()) == 1, message
    assert not (tmp_path / "runs" / "population_tiny" / "population.json").exists()


SWEEP = ["pets-sweep", "--config", str(ROOT / "configs" / "pets-sweep" / "tiny.yaml")]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, objmm_in) -> Path:
    """The tiny sweep (D and PE, seeds 0 and 1), run in-process."""
    where = tmp_path_factory.mktemp("sweep")
    objmm_in(where, SWEEP)
    return where


def test_a_sweep_runs_every_seed_and_type_once_and_feeds_the_population(sweep, in_tmp, capsys):
    shutil.copytree(sweep / "runs", in_tmp / "runs")
    index = json.loads((in_tmp / "runs" / "sweep_tiny" / "index.json").read_text())["runs"]
    assert [e["run"] for e in index] == ["D_s0", "D_s1", "PE_s0", "PE_s1"]
    assert all(e["finished_trials"] == 2 and len(e["models"]) == 2 for e in index)
    datasets = [torch.load(Path(e["models"][1]), weights_only=False)["dataset_rows"] for e in index]
    assert datasets == [90, 90, 90, 90]  # 2 x 30 random rows, then one 30-step episode
    first = {e["run"]: (in_tmp / e["run_dir"] / "state.json").read_text() for e in index}
    assert first["D_s0"] != first["D_s1"]  # the seeds differ
    # the summary's final reward: each run's mean over its last (up to 5) trials; the curves' figure
    found = json.loads((in_tmp / "runs" / "sweep_tiny" / "summary.json").read_text())
    for kind in ("D", "PE"):
        final = [np.mean(e["rewards"][-5:]) for e in index if e["run"].startswith(f"{kind}_")]
        assert found[kind]["final_rewards"] == pytest.approx(final)
        assert found[kind]["final_reward_mean"] == pytest.approx(np.mean(final))
    assert (in_tmp / "runs" / "sweep_tiny" / "curves.png").stat().st_size > 10_000
    capsys.readouterr()
    main(SWEEP)  # the same command again: nothing to do, nothing redone
    assert "trial 1/2" not in capsys.readouterr().out
    assert {e["run"]: (in_tmp / e["run_dir"] / "state.json").read_text() for e in index} == first
    main([*SWEEP, "--pets.trials", "3", "--sweep.seeds", "[1]", "--sweep.models", "{PE: " + json.dumps(
        {"members": 2, "width": 16, "depth": 1, "probabilistic": True, "lr": 0.003}) + "}"])  # fmt: skip
    state = json.loads((in_tmp / "runs" / "sweep_tiny" / "PE_s1" / "state.json").read_text())
    assert state["finished_trials"] == 3  # resumed, not restarted: its first two trials are the same
    assert json.dumps(state["history"][:2]) == json.dumps(json.loads(first["PE_s1"])["history"])
    main([*POPULATION, "--population.models", "[runs/sweep_tiny]", "--population.stack", "4",
          "--population.out", "population"])  # fmt: skip
    rows = table(in_tmp / "population")
    assert sorted(row["type"] for row in rows.values()) == ["D"] * 4 + ["PE"] * 5  # D and PE never share a stack
    assert {row["run_seed"] for row in rows.values()} == {0, 1}


@pytest.mark.slow  # about a minute: four PETS runs one after another in Ray workers
def test_a_sweep_on_ray_makes_the_same_runs(sweep, in_tmp):
    pytest.importorskip("ray")
    # 2 threads per task, as this process has: the same arithmetic, so the same runs to the bit
    main([*SWEEP, "--sweep.out", "on_ray", "--sweep.ray.address", "local", "--sweep.ray.num_cpus", "2",
          "--sweep.ray.cpus_per_task", "2"])  # fmt: skip
    assert histories(in_tmp / "on_ray") == histories(sweep / "runs" / "sweep_tiny")
    assert len(json.loads((in_tmp / "on_ray" / "index.json").read_text())["runs"]) == 4


STUDY = ["fit-sweep", "--config", str(ROOT / "configs" / "fit-sweep" / "tiny.yaml")]


def test_the_training_study_marks_best_epochs_and_resumes_a_run_from_its_checkpoint(in_tmp):
    main(STUDY)
    out = in_tmp / "runs" / "study_tiny"
    summary = json.loads((out / "training_study.json").read_text())
    assert set(summary) == {"D", "PE"} and summary["PE"]["runs"] == 2
    assert "best_val_mse_epoch" in summary["D"] and "best_val_nll_epoch" in summary["PE"]
    history = json.loads((out / "PE_s1" / "history.json").read_text())
    assert [m["epoch"] for m in history["metrics"]] == [0, 1, 2] and [r["epoch"] for r in history["reward"]] == [
        0,
        1,
        2,
    ]
    assert {"val/nll", "random/nll", "random/paper_ll"} <= set(history["metrics"][0])
    assert (out / "training_study.png").stat().st_size > 10_000
    # a run killed after its last checkpoint but before its history: resumed from the checkpoint,
    # its history (kept in the checkpoint) comes back whole
    (out / "PE_s1" / "history.json").unlink()
    main(STUDY)
    assert json.loads((out / "PE_s1" / "history.json").read_text()) == history
