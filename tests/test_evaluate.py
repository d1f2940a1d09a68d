"""`objmm evaluate`: saved models on named datasets, in both batch modes."""

import json
from pathlib import Path

from objmm.cli import main
from objmm.training import DynamicsModule
from objmm.training.saved_models import load_model, save_model


def test_a_saved_model_reloads_identically(in_tmp):
    module = DynamicsModule(members=2, width=8, weight_decay=[0.1, 0.2, 0.3])
    save_model(Path("m/trial_00.pt"), module, trial=0, dataset_rows=123)
    again, info = load_model(Path("m/trial_00.pt"))
    assert info == {"trial": 0, "dataset_rows": 123}
    assert again.hparams["weight_decay"] == [0.1, 0.2, 0.3]
    assert all((a == b).all() for a, b in zip(module.state_dict().values(), again.state_dict().values(), strict=True))


def test_evaluate_writes_one_row_per_model_dataset_and_batch_mode(in_tmp):
    for trial in (0, 1):
        save_model(Path(f"m/trial_{trial:02d}.pt"), DynamicsModule(members=2, width=8), trial=trial)
    main(["evaluate", "--models", "m", "--datasets", "{a: random:3x10, b: grid:2}", "--out", "e.json"])
    rows = json.loads(Path("e.json").read_text())["rows"]
    assert len(rows) == 2 * 2 * 2
    assert {(r["trial"], r["dataset"], r["batches"]) for r in rows} == {
        (t, d, b) for t in (0, 1) for d in "ab" for b in ("random", "trajectory")
    }
    assert all("paper_ll_batch_median" in r and "nll" in r for r in rows)


def test_evaluate_names_a_folder_without_models_and_a_dataset_of_another_env(in_tmp, capsys, error_of):
    Path("empty").mkdir()
    err = error_of("evaluate", "--models", "empty", "--datasets", "{a: grid:2}")
    assert err == "objmm: error: --models: empty holds no saved models (models/trial_NN.pt, or a fit's *.ckpt)"
    save_model(Path("m/trial_00.pt"), DynamicsModule(members=2, width=8), trial=0)
    main(["data", "sampled", "--env.id", "objmm/PETSHalfCheetah-v0", "--size", "20", "--out", "hc"])
    err = error_of("evaluate", "--models", "m", "--datasets", "{hc: hc}")
    assert err.endswith("was made for objmm/PETSHalfCheetah-v0, but the model is for objmm/PETSCartpole-v0")
    assert not Path("evaluation.json").exists()


def test_a_damaged_model_file_is_named(in_tmp, capsys, error_of):
    save_model(Path("m/trial_00.pt"), DynamicsModule(members=2, width=8), trial=0)
    data = Path("m/trial_00.pt").read_bytes()
    Path("m/trial_00.pt").write_bytes(data[: len(data) // 2])
    err = error_of("evaluate", "--models", "m", "--datasets", "{a: grid:2}")
    assert err.startswith("objmm: error: m/trial_00.pt is not a readable objmm model")
