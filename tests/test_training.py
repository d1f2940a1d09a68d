"""The LightningModule, the datamodule's batches and the reward callback."""

import pytest
import torch

from objmm.errors import ObjmmError
from objmm.training import DynamicsModule, EpisodeRewardCallback, TransitionDataModule
from objmm.training.datamodule import EnsembleBatches
from objmm.training.metrics import dataset_metrics
from objmm.training.trainer import bare_trainer


def test_training_lowers_the_validation_nll():
    data = TransitionDataModule(train="grid:4", batch_size=32, ensemble_size=3)
    data.setup()
    module = DynamicsModule(members=3, width=64, lr=3e-3)
    module.model.fit_normaliser(data.train_set.data["obs"], data.train_set.data["action"])
    before = dataset_metrics(module.model, data.val_datasets["val"].data)["nll"]
    bare_trainer(8).fit(module, datamodule=data)
    after = dataset_metrics(module.model, data.val_datasets["val"].data)["nll"]
    assert after < before - 5, (before, after)


def test_one_wild_row_moves_the_mean_nll_but_not_the_median():
    data = TransitionDataModule(train="grid:4", batch_size=32, ensemble_size=3)
    data.setup()
    module = DynamicsModule(members=3, width=64, lr=3e-3)
    bare_trainer(5).fit(module, datamodule=data)
    rows = data.val_datasets["val"].data.clone()
    clean = dataset_metrics(module.model, rows)
    rows["next_obs"][0] += 100.0  # one row far from anything the model predicts
    wild = dataset_metrics(module.model, rows)
    assert wild["nll"] > clean["nll"] + 10
    assert abs(wild["nll_median"] - clean["nll_median"]) < 0.5
    assert wild["mse"] > clean["mse"]


def test_each_member_gets_its_own_bootstrap_batch():
    rows = torch.arange(100.0)
    from tensordict import TensorDict

    data = TensorDict(obs=rows[:, None], batch_size=[100])
    batches = list(EnsembleBatches(data, members=4, batch_size=10, bootstrap=True, seed=0))
    assert len(batches) == 10 and batches[0].batch_size == (4, 10)
    first = batches[0]["obs"][..., 0]
    assert not torch.equal(first[0], first[1])  # members read different rows
    epoch = torch.cat([b["obs"][0, :, 0] for b in batches])
    assert len(epoch.unique()) < 100  # a bootstrap draws with replacement
    plain = torch.cat([b["obs"][0, :, 0] for b in EnsembleBatches(data, 1, 10, bootstrap=True, seed=0)])
    assert torch.equal(plain.sort().values, rows)  # one member: a plain shuffle of every row


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


def test_trajectory_mode_on_one_step_data_is_refused():
    data = TransitionDataModule(train="random:10x6", val_sets={"grid": "grid:2"}, val_batches="trajectory")
    with pytest.raises(ObjmmError, match="val set 'grid' has no trajectories"):
        data.setup()


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
