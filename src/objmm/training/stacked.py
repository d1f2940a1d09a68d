"""K dynamics models of one shape trained as one: each model on its own data, with its own bootstrap,
shuffles, input normaliser and optimiser state, their steps one batched op.

Stacked PETS runs (`objmm pets-sweep` with `sweep.stack`) train every run's model of a trial here.
The K models' parameters are stacked along a new first dimension and one step is `torch.func.vmap`
of the model's own loss (`DynamicsModule.batch_loss`) over them. The summed loss separates by model,
so each model's gradient is its own, and Adam works element by element, so each model ends where it
would have ended alone (to float tolerance: the batched matmuls may round otherwise;
`tests/test_stacked_pets.py` checks it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import lightning as L
import torch
from tensordict import TensorDict

from objmm.errors import ObjmmError
from objmm.objectives import MSE, GaussianNLL
from objmm.training.datamodule import EnsembleBatches, TransitionDataModule
from objmm.training.module import DynamicsModule
from objmm.training.trainer import inner_fit

#: objectives that keep nothing of their own between fits (a loss that reads its run's data or keeps
#: state, e.g. online re-weighting, would need one objective per model inside the batched step)
STACKABLE = (GaussianNLL, MSE)


class StackedBatches:
    """K models' epochs of [members, batch] TensorDicts (each model's own `EnsembleBatches`, its
    bootstrap and shuffles as alone) as [K, members, batch]."""

    def __init__(self, batches: Sequence[EnsembleBatches]):
        rows = [len(b.data) for b in batches]
        if len(set(rows)) != 1:
            raise ObjmmError(f"stacked models train on as many rows each; these have {rows}")
        self.batches = list(batches)

    def __len__(self) -> int:
        return len(self.batches[0])

    def __iter__(self) -> Iterator[TensorDict]:
        keys = ("obs", "action", "next_obs")
        for parts in zip(*self.batches, strict=True):
            yield TensorDict(
                {k: torch.stack([p[k] for p in parts]) for k in keys}, batch_size=[len(parts), *parts[0].batch_size]
            )


class _Loss(torch.nn.Module):
    """A module whose forward is a `DynamicsModule`'s training loss, for `torch.func.functional_call`."""

    def __init__(self, module: DynamicsModule):
        super().__init__()
        self.module = module

    def forward(self, batch) -> torch.Tensor:
        return self.module.batch_loss(batch)


def _name(parameter: str) -> str:
    return parameter.replace(".", "__")  # a ParameterDict key may not hold dots


class StackedDynamicsModule(L.LightningModule):
    """K `DynamicsModule`s of one architecture, objective and optimiser settings as one module: their
    parameters and normaliser buffers stacked [K, ...]; `unstack()` writes them back into the K modules."""

    def __init__(self, modules: Sequence[DynamicsModule]):
        super().__init__()
        first = modules[0]
        for i, module in enumerate(modules):
            if not isinstance(module.objective, STACKABLE):
                raise ObjmmError(
                    f"stacked training takes the NLL or MSE objective; model {i} trains with "
                    f"{type(module.objective).__name__}, which keeps state per model (use sweep.stack: 1)"
                )
            same = (
                dict(module.hparams) == dict(first.hparams)
                and type(module.objective) is type(first.objective)
                and [p.shape for p in module.parameters()] == [p.shape for p in first.parameters()]
            )
            if not same:
                raise ObjmmError(f"model {i} of the stack differs from model 0 in architecture, objective or lr")
        # plain lists: the K modules are not this module's children (their tensors are stacked here)
        self._modules_list, self._loss = list(modules), [_Loss(first)]
        params, buffers = torch.func.stack_module_state(list(modules))
        self.names = list(params)
        self.stacked = torch.nn.ParameterDict({_name(n): torch.nn.Parameter(p) for n, p in params.items()})
        self.buffer_names = list(buffers)
        for n, b in buffers.items():
            self.register_buffer(_name(n), b)
        self._step = torch.func.vmap(self._one_loss)

    @property
    def _template(self) -> DynamicsModule:
        return self._modules_list[0]

    def _one_loss(self, params: dict, buffers: dict, obs, action, next_obs) -> torch.Tensor:
        """Model 0's loss with one model's parameters and buffers (what `vmap` maps over the K)."""
        batch = {"obs": obs, "action": action, "next_obs": next_obs}  # NLL and MSE read no more of it
        tensors = {f"module.{n}": t for n, t in (params | buffers).items()}
        return torch.func.functional_call(self._loss[0], tensors, (batch,), strict=True)

    def forward(self, batch: TensorDict) -> torch.Tensor:
        """The K models' losses [K] on a [K, members, batch] batch."""
        params = {n: self.stacked[_name(n)] for n in self.names}
        buffers = {n: getattr(self, _name(n)) for n in self.buffer_names}
        return self._step(params, buffers, batch["obs"], batch["action"], batch["next_obs"])

    def training_step(self, batch: TensorDict, batch_idx: int) -> torch.Tensor:
        losses = self(batch)
        self._epoch_loss_sum += losses.detach()
        self._epoch_batches += 1
        return losses.sum()  # each model's gradient is its own loss's

    def on_train_epoch_start(self) -> None:
        self._epoch_loss_sum = torch.zeros(len(self._modules_list), device=self.device)
        self._epoch_batches = 0

    def on_train_epoch_end(self) -> None:
        self.epoch_losses = (self._epoch_loss_sum / max(self._epoch_batches, 1)).cpu()
        bad = (~torch.isfinite(self.epoch_losses)).nonzero().flatten().tolist()
        if bad:
            raise ObjmmError(
                f"the {self._template.objective.name} loss of stacked model {bad[0]} became "
                f"{self.epoch_losses[bad[0]].item()} at epoch {self.current_epoch}; lower model.lr or check the data"
            )
        self.log("train/loss", self.epoch_losses.mean())

    def transfer_batch_to_device(self, batch: TensorDict, device: torch.device, dataloader_idx: int) -> TensorDict:
        return batch.to(device, non_blocking=True)  # in one call, as `TransitionDataModule` does

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self._template.optimizer({n: self.stacked[_name(n)] for n in self.names})

    @torch.no_grad()
    def unstack(self) -> None:
        """The trained parameters (and the normaliser statistics) back into each of the K modules."""
        for k, module in enumerate(self._modules_list):
            own = dict(module.named_parameters()) | dict(module.named_buffers())
            for n in self.names:
                own[n].copy_(self.stacked[_name(n)][k])
            for n in self.buffer_names:
                own[n].copy_(getattr(self, _name(n))[k])


def fit_stacked(
    modules: Sequence[DynamicsModule], datamodules: Sequence[TransitionDataModule], trainer: L.Trainer
) -> list[float]:
    """Train K modules, module k on datamodule k's train set (set up), as one; their last epoch's mean
    training losses. Each module's normaliser is fitted to its own rows first, as `on_fit_start` does alone."""
    for module, data in zip(modules, datamodules, strict=True):
        module.model.fit_normaliser(data.train_set.data["obs"], data.train_set.data["action"])
        module.objective.on_fit_start(data.train_set)
    stacked = StackedDynamicsModule(modules)
    batches = StackedBatches([data.train_batches(trainer.strategy.root_device) for data in datamodules])
    inner_fit(trainer, stacked, train_dataloaders=batches)
    stacked.unstack()
    return stacked.epoch_losses.tolist()
