"""Appendix B (`objmm goals`): a PETS run's models on other goals, measured as the population measures
rewards, resumed goal by goal, the coverage counted right, and bad input in one line."""

import json
from pathlib import Path

import numpy as np
import pytest

from objmm.data import TransitionDataset
from objmm.experiments.rewards import Evaluation, stacked_rewards
from objmm.planning import CEMConfig
from objmm.training.saved_models import find_models, load_model

ROOT = Path(__file__).resolve().parents[1]
GOALS = ["goals", "--config", str(ROOT / "configs" / "goals" / "tiny.yaml")]


@pytest.fixture(scope="module")
def goals_run(tmp_path_factory, objmm_in, pets_tiny) -> Path:
    """The tiny run's 3 models on goals -0.5 and 0, then the same command with +0.5 added."""
    where = tmp_path_factory.mktemp("goals")
    pets_tiny(where)
    objmm_in(where, [*GOALS, "--goals.goals", "[-0.5, 0.0]"])
    return where


def saved(where: Path) -> dict:
    return json.loads((where / "runs" / "goals_tiny" / "goals.json").read_text())


def test_each_goal_is_the_reward_of_every_model_planned_for_that_goal(goals_run):
    found = {p["goal"]: np.array(p["rewards"]) for p in saved(goals_run)["goals"]}
    assert set(found) == {-0.5, 0.0} and found[0.0].shape == (3, 2)  # 3 models x 2 episodes
    models = [load_model(m)[0] for m in find_models(str(goals_run / "runs" / "pets_tiny"), "run")]
    evaluation = Evaluation(2, 30, CEMConfig(horizon=5, population=16, elites=4, iterations=2))
    for goal in (-0.5, 0.0):
        env = {"id": "objmm/PETSCartpole-v0", "kwargs": {"x_goal": goal}}
        assert np.allclose(found[goal], stacked_rewards(models, evaluation, env, seed=0, device="cpu"))
    # another goal is another task: the same models and episodes score differently
    assert not np.allclose(found[-0.5], found[0.0])


def test_coverage_is_the_share_of_the_runs_rows_near_each_goal(goals_run):
    data = TransitionDataset.load(goals_run / "runs" / "pets_tiny" / "dataset")
    x = data.data["obs"][:, 0].numpy()
    for row in saved(goals_run)["summary"]:
        assert row["coverage"] == pytest.approx(np.mean(np.abs(x - row["goal"]) <= 0.1))
        assert row["low"] <= row["reward"] <= row["high"]


def test_a_goal_added_later_is_the_only_one_planned(goals_run, objmm_in, capsys):
    before = {p["name"]: p for p in saved(goals_run)["goals"]}
    capsys.readouterr()
    objmm_in(goals_run, GOALS)  # the config's goals: -0.5, 0 and +0.5
    out = capsys.readouterr().out
    assert "x_goal=+0.50 (1/1)" in out and "x_goal=-0.50 (" not in out
    after = {p["name"]: p for p in saved(goals_run)["goals"]}
    assert set(after) == {*before, "x_goal=+0.50"} and all(after[k] == before[k] for k in before)
    assert [r["goal"] for r in saved(goals_run)["summary"]] == [-0.5, 0.0, 0.5]
    assert (goals_run / "runs" / "goals_tiny" / "fig12.png").is_file()
    assert (goals_run / "runs" / "goals_tiny" / "fig13.png").is_file()


def test_bad_input_is_one_line(in_tmp, error_of, pets_tiny):
    pets_tiny(in_tmp)
    message = error_of(*GOALS, "--env.id", "objmm/PETSHalfCheetah-v0")
    assert "has no x_goal in its reward" in message
    assert "goals.goals is empty" in error_of(*GOALS, "--goals.goals", "[]")
    assert "is not an objmm pets run" in error_of(*GOALS, "--goals.run", "runs")


def test_a_subset_of_trials_plans_exactly_those_models(goals_run, objmm_in):
    objmm_in(goals_run, [*GOALS, "--goals.trials", "[1, 3]", "--goals.goals", "[0.0]", "--goals.out", "some"])
    (piece,) = json.loads((goals_run / "some" / "goals.json").read_text())["goals"]
    everyone = {p["goal"]: p["rewards"] for p in saved(goals_run)["goals"]}[0.0]
    # trials 1 and 3 of the 3: the rewards they have in the stack of all 3
    np.testing.assert_allclose(piece["rewards"], [everyone[0], everyone[2]], rtol=1e-9)


def test_trials_the_run_does_not_have_are_one_line(in_tmp, error_of, pets_tiny):
    pets_tiny(in_tmp)
    assert error_of(*GOALS, "--goals.trials", "[0, 2, 4]") == (
        "objmm: error: goals.trials: runs/pets_tiny has the models of trials 1-3, not of [0, 4]"
    )
