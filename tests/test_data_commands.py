"""`objmm data ...`: each dataset command writes a dataset that reloads as it was made."""

import json
from pathlib import Path

import torch

from objmm.cli import main
from objmm.data import TransitionDataset, random_rollouts

ROOT = Path(__file__).resolve().parents[1]


def test_grid_sampled_babbling_write_reloadable_datasets(in_tmp):
    main(["data", "grid", "--points", "3", "--out", "g"])
    main(["data", "sampled", "--env.id", "objmm/PETSHalfCheetah-v0", "--size", "500", "--out", "s"])
    main(["data", "babbling", "--rollouts", "20", "--horizon", "10", "--out", "b"])
    grid, sampled, babbling = (TransitionDataset.load(p) for p in ("g", "s", "b"))
    assert len(grid) == 3**5 and grid.metadata["source"] == "grid"
    assert len(sampled) == 500 and sampled.metadata["source"] == "sampled"
    rows = torch.cat([sampled.data["obs"], sampled.data["action"]], 1)
    low = torch.tensor(sampled.metadata["state_low"] + [-1.0] * 6)
    high = torch.tensor(sampled.metadata["state_high"] + [1.0] * 6)
    assert ((rows >= low - 1e-5) & (rows <= high + 1e-5)).all()  # inside the documented box
    assert (rows.min(0).values < low + 0.2 * (high - low)).all()  # and spread over it
    assert len(babbling) == 200 and babbling.episodes == 20
    assert torch.equal(babbling.data["obs"][babbling.data["step"] == 0], torch.zeros(20, 4))  # noise-free start
    again = TransitionDataset.load("g")
    assert (again.data == grid.data).all() and again.metadata == grid.metadata


def test_expert_keeps_only_episodes_above_the_bar(in_tmp):
    main(
        [
            "data",
            "expert",
            "--size",
            "60",
            "--min_reward",
            "-1",
            "--episodes_per_batch",
            "2",
            "--max_episodes",
            "2",
            "--cem.horizon",
            "5",
            "--cem.population",
            "20",
            "--cem.elites",
            "4",
            "--cem.iterations",
            "2",
            "--out",
            "e",
        ]
    )
    expert = TransitionDataset.load("e")
    assert len(expert) == 60 and expert.metadata["source"] == "expert"
    assert len(expert.metadata["episode_rewards"]) == 1 and expert.metadata["episode_rewards"][0] > -1


def test_expert_that_cannot_reach_the_bar_says_so(in_tmp, capsys, error_of):
    err = error_of(
        "data",
        "expert",
        "--size",
        "60",
        "--episodes_per_batch",
        "1",
        "--max_episodes",
        "1",
        "--cem.horizon",
        "3",
        "--cem.population",
        "8",
        "--cem.elites",
        "2",
        "--cem.iterations",
        "1",
    )
    assert err.startswith("objmm: error: only 0 of 1 expert episodes beat reward 179.0")


def test_on_policy_is_the_runs_training_split_cut_at_an_episode_boundary(in_tmp, capsys, error_of):
    tiny = str(ROOT / "configs" / "pets" / "tiny.yaml")
    main(["pets", "--config", tiny, "--pets.run_dir", "r", "--pets.trials", "2"])
    capsys.readouterr()
    err = error_of("data", "on-policy", "--run", "r", "--trials", "2")
    assert err.startswith("objmm: error: the pets run r never solved objmm/PETSCartpole-v0 in 2 trials: best reward")
    err = error_of("data", "on-policy", "--run", "r", "--min_reward", "-1", "--trials", "3")
    assert err.endswith("fewer than --trials 3; go on with: objmm pets --resume r --pets.trials 3")
    main(["data", "on-policy", "--run", "r", "--min_reward", "-1", "--trials", "1", "--out", "op"])
    on_policy = TransitionDataset.load("op")
    # pets_tiny: initial random:2x30, then 30-step trials; after trial 1: 3 episodes of 30 rows, 27 kept of each
    assert len(on_policy) == 3 * 27 and on_policy.metadata["source"] == "on-policy"
    episodes, counts = on_policy.data["episode"].unique(return_counts=True)
    assert episodes.tolist() == [0, 1, 2] and (counts == 27).all()
    # the rows the run itself trained on (the held-out 10% of each episode are not in it)
    run = TransitionDataset.load("r/dataset")
    held_out = json.loads(Path("r/state.json").read_text())["history"][0]
    assert held_out["rows"] == 90
    whole = run.data[:90]
    kept = {tuple(row.tolist()) for row in on_policy.data["obs"]}
    assert len(kept) == 81 and kept < {tuple(row.tolist()) for row in whole["obs"]}
    # --part held_out: the other 3 rows of each episode, which no model of the run trained on
    main(
        ["data", "on-policy", "--run", "r", "--min_reward", "-1", "--trials", "1", "--part", "held_out", "--out", "ho"]
    )
    rest = {tuple(row.tolist()) for row in TransitionDataset.load("ho").data["obs"]}
    assert len(rest) == 9 and not rest & kept and rest | kept == {tuple(row.tolist()) for row in whole["obs"]}


def test_half_cheetah_dataset_given_to_a_cartpole_model(in_tmp, capsys, error_of):
    main(["data", "sampled", "--env.id", "objmm/PETSHalfCheetah-v0", "--size", "50", "--out", "hc"])
    err = error_of("fit", "--config", str(ROOT / "configs" / "fit" / "tiny.yaml"), "--data.train", "hc")
    expected = "dataset 'hc' was made for objmm/PETSHalfCheetah-v0, but the model is for objmm/PETSCartpole-v0"
    assert err.splitlines()[-1] == f"objmm: error: {expected}"


TINY_EXPERT = ["data", "expert", "--min_reward", "-1", "--episodes_per_batch", "1", "--out", "e"]
TINY_EXPERT += ["--cem.horizon", "5", "--cem.population", "20", "--cem.elites", "4", "--cem.iterations", "2"]


def test_a_stopped_expert_run_goes_on_from_its_last_batch(in_tmp, capsys, error_of):
    # stopped after its first episode (max_episodes 1 of the 2 that 400 rows need) ...
    err = error_of(*TINY_EXPERT, "--size", "400", "--max_episodes", "1")
    assert err.startswith("objmm: error: only 1 of 1 expert episodes beat reward -1.0 (best ")
    assert "200 of 400 transitions, and max_episodes is 1; raise max_episodes" in err
    first = TransitionDataset.load("e.partial/dataset")
    assert len(first) == 200 and not Path("e").exists()
    # ... the same command goes on from there: one more episode, not two
    main([*TINY_EXPERT, "--size", "400", "--max_episodes", "2"])
    assert "resuming e.partial: 1 episodes tried, 200 transitions kept" in capsys.readouterr().out
    expert = TransitionDataset.load("e")
    assert len(expert) == 400 and expert.metadata["episodes_tried"] == 2 and expert.episodes == 2
    assert len(expert.metadata["episode_rewards"]) == 2
    assert torch.equal(expert.data["obs"][:200], first.data["obs"])
    assert not Path("e.partial").exists()
    # other settings than the unfinished run's are refused, not mixed in
    error_of(*TINY_EXPERT, "--size", "400", "--max_episodes", "1", "--out", "f")
    err = error_of(*TINY_EXPERT, "--size", "400", "--max_episodes", "1", "--out", "f", "--seed", "1")
    assert "f.partial holds an unfinished expert run with other settings" in err


def test_on_policy_has_table_2s_size_for_a_20_trial_cartpole_run(in_tmp):
    """A stand-in for a solved 20-trial PETS cartpole run: 1 + 20 episodes of 200 rows."""
    episodes = random_rollouts("objmm/PETSCartpole-v0", episodes=21, horizon=200)
    run = Path("run")
    episodes.save(run / "dataset")
    history = [{"trial": t, "reward/mean": 179.5 if t == 12 else 150.0, "rows": 200 * (t + 2)} for t in range(20)]
    state = {"finished_trials": 20, "dataset_rows": 4200, "initial_rows": 200, "history": history}
    (run / "state.json").write_text(json.dumps(state))
    (run / "pets_config.yaml").write_text("seed_everything: 0\ndata: {train_fraction: 0.9}\n")
    main(["data", "on-policy", "--run", "run", "--out", "op"])
    on_policy = TransitionDataset.load("op")
    assert len(on_policy) == 3780  # Table 2: 0.9 x (1 + 20) x 200
    _, counts = on_policy.data["episode"].unique(return_counts=True)
    assert len(counts) == 21 and (counts == 180).all()
