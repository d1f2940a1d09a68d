"""The LightningModule, the datamodule's batches and the reward callback."""

import math

import pytest
import torch
from tensordict import TensorDict

from objmm.data import TransitionDataset
from objmm.errors import ObjmmError
from objmm.models import DynamicsModel
from objmm.training import DynamicsModule, EpisodeRewardCallback, TransitionDataModule
from objmm.training.datamodule import EnsembleBatches
from objmm.training.metrics import dataset_metrics, paper_ll_from_nll, row_metrics
from objmm.training.trainer import bare_trainer

CARTPOLE = "objmm/PETSCartpole-v0"


def test_training_lowers_the_validation_nll(device):
    data = TransitionDataModule(train="grid:4", batch_size=32, ensemble_size=3)
    data.setup()
    module = DynamicsModule(members=3, width=64, lr=3e-3)
    module.model.fit_normaliser(data.train_set.data["obs"], data.train_set.data["action"])
    before = dataset_metrics(module.model, data.val_datasets["val"])["nll"]
    trainer = bare_trainer(8, str(device))
    trainer.fit(module, datamodule=data)
    # it trained where --device says (Lightning moves the module back to the CPU when fit ends)
    assert trainer.strategy.root_device.type == device.type
    after = dataset_metrics(module.model, data.val_datasets["val"])["nll"]
    assert after < before - 5, (before, after)


def test_one_wild_row_moves_the_mean_nll_but_not_the_median():
    data = TransitionDataModule(train="grid:4", batch_size=32, ensemble_size=3)
    data.setup()
    module = DynamicsModule(members=3, width=64, lr=3e-3)
    bare_trainer(5).fit(module, datamodule=data)
    rows = TransitionDataset(data.val_datasets["val"].data.clone(), {"env_id": CARTPOLE})
    clean = dataset_metrics(module.model, rows)
    rows.data["next_obs"][0] += 100.0  # one row far from anything the model predicts
    wild = dataset_metrics(module.model, rows)
    assert wild["nll"] > clean["nll"] + 10
    assert abs(wild["nll_median"] - clean["nll_median"]) < 0.5
    assert wild["mse"] > clean["mse"]


def test_each_member_gets_its_own_bootstrap_batch():
    rows = torch.arange(100.0)
    data = TensorDict(obs=rows[:, None], batch_size=[100])
    batches = list(EnsembleBatches(data, members=4, batch_size=10, bootstrap=True, seed=0))
    assert len(batches) == 10 and batches[0].batch_size == (4, 10)
    first = batches[0]["obs"][..., 0]
    assert not torch.equal(first[0], first[1])  # members read different rows
    epoch = torch.cat([b["obs"][0, :, 0] for b in batches])
    assert len(epoch.unique()) < 100  # a bootstrap draws with replacement
    plain = torch.cat([b["obs"][0, :, 0] for b in EnsembleBatches(data, 1, 10, bootstrap=True, seed=0)])
    assert torch.equal(plain.sort().values, rows)  # one member: a plain shuffle of every row


def test_the_bootstrap_is_drawn_once_per_fit_and_reshuffled_every_epoch():
    data = TensorDict(obs=torch.arange(200.0)[:, None], batch_size=[200])
    loader = EnsembleBatches(data, members=3, batch_size=16, bootstrap=True, seed=0)

    def epoch():
        rows = torch.cat([b["obs"][..., 0] for b in loader], dim=1)  # [members, 200] in the order walked
        return rows, rows.sort(dim=1).values  # the order, and each member's multiset of rows

    order_1, sample_1 = epoch()
    for _ in range(3):
        epoch()
    order_5, sample_5 = epoch()
    assert torch.equal(sample_1, sample_5)  # the same bootstrap sample in epoch 1 and epoch 5 ...
    assert not torch.equal(order_1, order_5)  # ... walked in a new order
    assert not torch.equal(sample_1[0], sample_1[1]) and not torch.equal(sample_1[1], sample_1[2])
    other_fit = EnsembleBatches(data, members=3, batch_size=16, bootstrap=True, seed=1)
    other = torch.cat([b["obs"][..., 0] for b in other_fit], dim=1).sort(dim=1).values
    assert not torch.equal(other, sample_1)  # another fit (seed) draws another bootstrap


def test_trajectory_batches_hold_one_whole_trajectory_each():
    data = TransitionDataModule(
        train="random:10x6", val_sets={"more": "random:3x8"}, val_batches="trajectory", ensemble_size=1
    )
    data.setup()
    loaders = data.val_dataloader()
    assert len(loaders) == 2 and len(loaders[1]) == 3
    for batch in loaders[1]:
        assert len(batch["episode"].unique()) == 1
        assert batch["step"].tolist() == list(range(8))


def test_trajectory_mode_on_one_step_data_keeps_random_batches(capsys):
    data = TransitionDataModule(
        train="random:10x6", val_sets={"grid": "grid:2"}, val_batches="trajectory", val_batch_size=8
    )
    data.setup()
    assert "val sets without trajectories keep random batches: grid" in capsys.readouterr().out
    grid_batches = data.val_dataloader()[1]
    assert len(grid_batches) == 4 and all(len(b) == 8 for b in grid_batches)  # 32 rows in batches of 8


def outlier_dataset() -> TransitionDataset:
    """10 trajectories of 20 steps; trajectory 3's targets are far off in every row."""
    obs = torch.randn(10, 20, 4) * 0.1
    next_obs = obs + 0.01
    next_obs[3] += 50.0
    return TransitionDataset.from_trajectories(CARTPOLE, obs, torch.zeros(10, 20, 1), next_obs)


def test_appendix_c_trajectory_batches_keep_an_outlier_trajectory_in_one_batch():
    dataset = outlier_dataset()
    model = DynamicsModel(CARTPOLE, members=2, width=8)
    by_rows = dataset_metrics(model, dataset, batches="random", batch_size=20)
    by_trajectory = dataset_metrics(model, dataset, batches="trajectory")
    clean = TransitionDataset(dataset.data[dataset.data["episode"] != 3], {"env_id": CARTPOLE})
    clean_ll = dataset_metrics(model, clean, batches="trajectory")["paper_ll_batch_median"]
    # the mean over rows cannot tell the two apart (the plain mean the paper's appendix C warns of)
    assert by_rows["paper_ll"] == pytest.approx(by_trajectory["paper_ll"], rel=1e-5)
    # random batches of 20 hold ~2 outlier rows each: nearly every batch mean is dragged down
    assert by_rows["paper_ll_batch_median"] < clean_ll - 100
    # one trajectory a batch: the outlier is one batch of ten, and the median barely moves
    assert by_trajectory["paper_ll_batch_median"] == pytest.approx(clean_ll, abs=abs(clean_ll) * 0.2)
    assert by_trajectory["nll_batch_median"] < by_rows["nll_batch_median"] - 100


def test_the_papers_ll_is_the_per_dimension_ll_without_the_constant():
    model = DynamicsModel(CARTPOLE, members=3, width=8)
    dataset = outlier_dataset()
    batch = dataset.data[:7]
    rows = row_metrics(model, None, batch)
    prediction = model(batch["obs"], batch["action"])
    error2 = (model.targets(batch["obs"], batch["next_obs"]) - prediction.mean) ** 2
    by_hand = (-0.5 * (error2 * torch.exp(-prediction.logvar) + prediction.logvar)).mean(-1).mean(0)
    assert torch.allclose(rows["paper_ll"], by_hand, atol=1e-4)
    # the conversion documented in docs/objectives.md: LL = 0.5 log(2 pi) - NLL / D
    assert torch.allclose(rows["paper_ll"], 0.5 * math.log(2 * math.pi) - rows["nll"] / 4, atol=1e-4)
    # a full cartpole NLL of -16 (late in a PETS run) is 4.92 in the paper's convention
    assert paper_ll_from_nll(-16.0, 4) == pytest.approx(4.919, abs=1e-3)


def test_validation_logs_the_objectives_loss_and_both_lls(in_tmp):
    data = TransitionDataModule(train="random:6x10", val_batches="trajectory", ensemble_size=2)
    module = DynamicsModule(members=2, width=8)
    trainer = bare_trainer(1)
    trainer.limit_val_batches = 1.0
    trainer.fit(module, datamodule=data)
    metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
    for key in ("val/nll", "val/loss", "val/paper_ll", "val/paper_ll_batch_median", "val/mse", "val/nll_median"):
        assert key in metrics, key
    assert metrics["val/loss"] == pytest.approx(metrics["val/nll"], rel=1e-5)  # GaussianNLL's loss is the NLL


def test_weight_decay_per_layer_reaches_the_optimizer():
    module = DynamicsModule(members=2, width=8, depth=2, weight_decay=[1e-4, 2e-4, 5e-4])
    groups = module.configure_optimizers().param_groups
    decays = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    layers = module.model.net.layers
    assert [decays[id(layer.weight)] for layer in layers] == [1e-4, 2e-4, 5e-4]
    assert all(decays[id(layer.bias)] == 0.0 for layer in layers)
    with pytest.raises(ObjmmError, match="model.weight_decay must be one number >= 0 or 3"):
        DynamicsModule(members=2, width=8, depth=2, weight_decay=[1e-4, 2e-4])


def test_reward_callback_remembers_best_epochs_and_round_trips_its_state():
    callback = EpisodeRewardCallback()
    callback.reward_history = [(2, 100.0, 1.0), (5, 175.0, 0.5), (8, 170.0, 2.0)]
    callback.monitor_history = [(e, 10.0 - e) for e in range(10)]
    summary = callback.summary()
    assert summary["summary/best_reward_epoch"] == 5 and summary["summary/best_monitor_epoch"] == 9
    other = EpisodeRewardCallback()
    other.load_state_dict(callback.state_dict())
    assert other.summary() == summary


def test_reward_callback_evaluates_the_current_model():
    from objmm.planning import CEMConfig

    module = DynamicsModule(members=1, width=8)
    callback = EpisodeRewardCallback(episodes=2, cem=CEMConfig(horizon=3, population=8, elites=2, iterations=1))
    rewards = callback.evaluate(module)
    assert rewards.shape == (2,) and (rewards > 0).all() and (rewards < 200).all()


def test_the_module_s_quick_setattr_leaves_parameters_buffers_and_submodules_to_torch():
    """`DynamicsModule.__setattr__` puts Lightning's plain per-hook attributes straight in; anything
    torch keeps apart (parameters, buffers, submodules) still goes through torch."""
    module = DynamicsModule(members=1, width=4, depth=1)
    module._current_fx_name = "training_step"
    module._current_fx_name = None  # set again: the quick path
    assert module.__dict__["_current_fx_name"] is None
    module.scale = torch.nn.Parameter(torch.ones(1))
    module.head_copy = torch.nn.Linear(2, 2)
    module.register_buffer("seen", torch.zeros(1))
    module.seen = torch.ones(1)
    assert "scale" in dict(module.named_parameters()) and "head_copy" in module._modules
    assert torch.equal(module._buffers["seen"], torch.ones(1)) and "seen" not in module.__dict__
    with pytest.raises(TypeError, match="cannot assign 'int' as child module 'head_copy'"):
        module.head_copy = 3  # torch's own check, as before


def test_a_training_step_reads_nothing_back_from_the_device_but_on_logging_steps(device):
    """Issue 20's item 3 (no per-step host syncs): between one optimiser step and the next (the
    step's end, the batch's transfer, forward, loss, backward), a fit reads a value back from the
    device only on its logging steps and at an epoch's end. Lightning used to `.item()` the
    progress bar's loss at every step's end, bar or no bar; with a bar the loss still shows there."""
    import lightning as L
    from torch.utils._python_dispatch import TorchDispatchMode

    reads = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default}

    class Reads(TorchDispatchMode):
        counting, count = False, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += self.counting and func in reads
            return func(*args, **(kwargs or {}))

    mode = Reads()

    class Window(L.Callback):  # counts from a step's end to the next optimiser step (Adam's own reads left out)
        def on_train_batch_end(self, *args):
            mode.counting = True

        def on_before_optimizer_step(self, *args):
            mode.counting = False

    data = TransitionDataModule(train="grid:4", batch_size=32, ensemble_size=3)
    data.setup()
    trainer = bare_trainer(8, str(device), callbacks=[Window()])
    with mode:
        trainer.fit(DynamicsModule(members=3, width=8), datamodule=data)
    steps, every = trainer.global_step, trainer.log_every_n_steps
    assert steps > 3 * every  # enough steps for a read a step to show
    assert mode.count <= steps // every + 1 + 8, (mode.count, steps)  # logging steps, and 8 epochs' ends
    assert "train/loss_step" not in trainer.progress_bar_metrics  # no bar here
    with_bar = L.Trainer(
        max_epochs=1, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    with_bar.fit(DynamicsModule(members=3, width=8), datamodule=data)
    assert math.isfinite(with_bar.progress_bar_metrics["train/loss_step"])
    assert with_bar.callback_metrics["train/loss_step"].device.type == "cpu"  # turned into a number without a sync
