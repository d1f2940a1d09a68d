"""Fault injection: damaged files and interrupted writes are named or recovered, never loaded as data."""

import json
import os
import stat
from pathlib import Path

import pytest

from objmm.cli import main
from objmm.data import TransitionDataset, random_rollouts
from objmm.errors import ObjmmError

CARTPOLE = "objmm/PETSCartpole-v0"


@pytest.fixture
def saved(tmp_path) -> Path:
    random_rollouts(CARTPOLE, episodes=3, horizon=10).save(tmp_path / "d")
    return tmp_path / "d"


@pytest.mark.parametrize("cut", [0, 37, -4], ids=["emptied", "truncated", "short by a value"])
@pytest.mark.parametrize("field", ["obs", "next_obs", "episode"])
def test_a_cut_rows_file_is_named_and_left_as_it_was(saved, field, cut):
    file = saved / "rows" / f"{field}.memmap"
    data = file.read_bytes()
    file.write_bytes(data[:cut])
    damaged_size = file.stat().st_size
    with pytest.raises(ObjmmError, match=f"dataset {saved} is damaged: {field} holds {damaged_size} bytes"):
        TransitionDataset.load(saved)
    assert file.stat().st_size == damaged_size  # not grown back (zeros) behind the user's back


def test_changed_rows_fail_the_checksum(saved):
    file = saved / "rows" / "obs.memmap"
    data = bytearray(file.read_bytes())
    data[5] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(ObjmmError, match="do not match the checksum written when it was saved"):
        TransitionDataset.load(saved)


@pytest.mark.parametrize("name", ["objmm.json", "rows/meta.json"])
def test_garbled_metadata_is_named(saved, name):
    (saved / name).write_text("{not json")
    with pytest.raises(ObjmmError, match=f"dataset {saved} is damaged: its metadata cannot be read"):
        TransitionDataset.load(saved)


def test_saving_over_a_folder_that_is_not_a_dataset_is_refused(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(ObjmmError, match="exists and is not an objmm dataset; choose another path"):
        random_rollouts(CARTPOLE, episodes=1, horizon=5).save(precious)
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_the_data_command_refuses_it_too(in_tmp, capsys):
    Path("notes").mkdir()
    (Path("notes") / "a.txt").write_text("keep")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "grid", "--points", "2", "--out", "notes"])
    assert exit_info.value.code == 2
    assert "notes exists and is not an objmm dataset" in capsys.readouterr().err
    assert (Path("notes") / "a.txt").read_text() == "keep"


def test_a_save_killed_between_its_renames_is_recovered_on_load(saved):
    old = saved.with_name(f".{saved.name}.old")
    os.replace(saved, old)  # where save() stands between its two renames
    dataset = TransitionDataset.load(saved)
    assert len(dataset) == 30 and saved.is_dir() and not old.exists()


def test_a_save_killed_while_deleting_the_old_dataset_does_not_stop_the_next_save(saved):
    """A kill inside the last step of a save (deleting the dataset it replaced) leaves part of that
    old dataset beside the new one; the next save of the same path (a resumed PETS run's) goes on."""
    old = saved.with_name(f".{saved.name}.old")
    (old / "rows").mkdir(parents=True)
    (old / "rows" / "obs.memmap").write_bytes(b"left by the kill")
    bigger = random_rollouts(CARTPOLE, episodes=4, horizon=10)
    bigger.save(saved)
    assert len(TransitionDataset.load(saved)) == 40 and not old.exists()


def test_a_save_killed_while_writing_leaves_one_folder_that_the_next_save_clears(saved, monkeypatch):
    """A kill while a save writes its rows leaves its temporary folder; the next saves of the same
    path reuse and clear it, so kills do not pile up copies beside a run."""

    def killed(self, prefix, *args, **kwargs):
        (Path(prefix) / "obs.memmap").parent.mkdir(parents=True, exist_ok=True)
        (Path(prefix) / "obs.memmap").write_bytes(b"half")
        raise KeyboardInterrupt  # what a kill's signal does to the save

    bigger = random_rollouts(CARTPOLE, episodes=4, horizon=10)
    with monkeypatch.context() as patched:
        patched.setattr(type(bigger.data), "memmap", killed)
        with pytest.raises(KeyboardInterrupt):
            bigger.save(saved)
    leftover = saved.with_name(f".{saved.name}.saving")
    (leftover / "rows").mkdir(parents=True, exist_ok=True)  # as if SIGKILL had skipped the cleanup
    (leftover / "rows" / "obs.memmap").write_bytes(b"left by the kill")
    assert len(TransitionDataset.load(saved)) == 30  # the saved dataset is untouched
    bigger.save(saved)
    bigger.save(saved)
    assert len(TransitionDataset.load(saved)) == 40
    assert sorted(p.name for p in saved.parent.iterdir()) == ["d"]  # nothing beside it


def test_a_folder_deleted_by_a_killed_call_is_gone_from_its_path_and_cleared_by_the_next(tmp_path, monkeypatch):
    """`atomic.remove_folder`: a kill while deleting (here, inside rmtree) leaves nothing at the path a
    resumed run would read; what it left aside is cleared by the next call for that path."""
    import shutil

    from objmm import atomic

    folder = tmp_path / "e.partial"
    (folder / "dataset").mkdir(parents=True)
    (folder / "progress.json").write_text("{}")

    def killed(path, ignore_errors=False):
        if not ignore_errors:
            raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic.remove_folder(folder)
    monkeypatch.undo()
    aside = tmp_path / ".e.partial.deleting"
    assert not folder.exists() and (aside / "progress.json").is_file()
    (folder / "dataset").mkdir(parents=True)  # the next run's partial results, deleted when it finishes
    atomic.remove_folder(folder)
    assert sorted(tmp_path.iterdir()) == []


def test_result_files_are_readable_by_others_as_usual(in_tmp):
    main(["pets", "--config", str(Path(__file__).parents[1] / "configs" / "pets" / "tiny.yaml"), "--pets.trials", "1"])
    run = Path("runs/pets_tiny")
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (run / "state.json", run / "pets_config.yaml", run / "models" / "trial_00.pt", run / "pets_curve.png"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    assert stat.S_IMODE((run / "dataset").stat().st_mode) == 0o777 & ~mask
    assert json.loads((run / "dataset" / "objmm.json").read_text())["checksum"]


ROOT = Path(__file__).resolve().parents[1]
FIT = ["fit", "--config", str(ROOT / "configs" / "fit" / "tiny.yaml")]
PETS = ["pets", "--config", str(ROOT / "configs" / "pets" / "tiny.yaml")]
BAD_INPUT = [
    (FIT + ["--data.batch_size", "0"], "data.batch_size must be at least 1, got 0"),
    (FIT + ["--data.val_batch_size", "-3"], "data.val_batch_size must be at least 1, got -3"),
    (FIT + ["--model.members", "0"], "model.members must be at least 1, got 0"),
    (FIT + ["--model.width", "0"], "model.width must be at least 1, got 0"),
    (FIT + ["--model.lr", "-0.001"], "model.lr must be positive, got -0.001"),
    (FIT + ["--trainer.callbacks.init_args.every_n_epochs", "0"], "EpisodeRewardCallback needs every_n_epochs"),
    (FIT + ["--trainer.callbacks.init_args.cem.elites", "99"], "cem.elites (99) must not exceed cem.population (16)"),
    (FIT + ["--ckpt_path", "missing.ckpt"], "--ckpt_path missing.ckpt: no checkpoint there"),
    (FIT + ["--ckpt_path", "garbage.ckpt"], "--ckpt_path garbage.ckpt is not a readable checkpoint"),
    (PETS + ["--pets.cem.horizon", "0"], "cem.horizon must be at least 1, got 0"),
    (PETS + ["--pets.cem.elites", "50"], "cem.elites (50) must not exceed cem.population (16)"),
    (PETS + ["--pets.trials", "0"], "pets.trials must be at least 1, got 0"),
    (PETS + ["--pets.episode_steps", "0"], "pets.episode_steps must be at least 1, got 0"),
    (PETS + ["--data.train", "random:1x1"], "data.train 'random:1x1' has 1 rows; PETS needs 2"),
    (PETS + ["--data.train", "grid:2"], "data.train 'grid:2' is one-step rows, not trajectories; PETS starts"),
    (PETS + ["--env.id", "objmm/Nope-v0"], "unknown env id 'objmm/Nope-v0'"),
    (FIT + ["--env.kwargs", "{x_gaol: 0.5}"], "env.kwargs {'x_gaol': 0.5} do not fit objmm/PETSCartpole-v0"),
    (["pets", "--resume", "nowhere"], "nowhere is not an objmm pets run"),
    (FIT + ["--trainer.logger.init_args.offline", "false"], "offline is false but W&B has no login here"),
    (PETS + ["--trainer.logger.init_args.offline", "false"], "offline is false but W&B has no login here"),
    (["data", "grid", "--points", "0"], "points must be at least 1, got 0"),
    (["data", "expert", "--episodes_per_batch", "0"], "episodes_per_batch must be at least 1, got 0"),
]


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[" ".join(a[3:] or a[:3]) for a, _ in BAD_INPUT])
def test_an_ordinary_mistake_is_one_line_and_leaves_nothing_behind(args, message, in_tmp, capfd, monkeypatch):
    Path("garbage.ckpt").write_text("garbage\n")
    for variable in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NETRC", str(in_tmp / "no-netrc"))
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("objmm: error: ") and message in err and len(err.splitlines()) == 1, err
    assert not Path("runs").exists() and not Path("data").exists()  # no W&B run, run folder or result file


def test_a_garbled_pets_state_is_named(in_tmp, capsys):
    main(PETS + ["--pets.run_dir", "r", "--pets.trials", "1"])
    Path("r/state.json").write_text('{"finished_trials": 1, "hist')
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["pets", "--resume", "r"])
    assert capsys.readouterr().err.strip().startswith("objmm: error: r/state.json is damaged")


def test_a_truncated_trial_model_is_named_on_resume(in_tmp, capsys):
    main(PETS + ["--pets.run_dir", "r", "--pets.trials", "1"])
    model = Path("r/models/trial_00.pt")
    model.write_bytes(model.read_bytes()[:100])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["pets", "--resume", "r", "--pets.trials", "2"])
    assert (
        capsys.readouterr().err.strip().startswith("objmm: error: r/models/trial_00.pt is not a readable objmm model")
    )


def test_resume_with_a_run_dir_beside_it_is_refused(in_tmp, capsys):
    main(PETS + ["--pets.run_dir", "r", "--pets.trials", "1"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["pets", "--resume", "r", "--pets.run_dir", "elsewhere"])
    assert "--resume RUN_DIR takes the run's own config and directory" in capsys.readouterr().err
