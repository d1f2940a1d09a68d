"""The LightningModule that fits a dynamics model with a pluggable objective."""

from __future__ import annotations

import lightning as L
import torch
from tensordict import TensorDictBase

from objmm.errors import ObjmmError, require_at_least_one
from objmm.models import DynamicsModel
from objmm.objectives import MSE, GaussianNLL, Objective
from objmm.training.metrics import MetricsAccumulator, row_metrics


class DynamicsModule(L.LightningModule):
    def __init__(
        self,
        env_id: str = "objmm/PETSCartpole-v0",
        members: int = 5,
        width: int = 200,
        depth: int = 2,
        probabilistic: bool = True,
        objective: Objective | None = None,
        lr: float = 1e-3,
        weight_decay: float | list[float] = 0.0,
        env_kwargs: dict | None = None,
    ):
        """
        Args:
            env_id: the objmm env (linked from `env.id` by the CLI).
            members, width, depth, probabilistic: the ensemble. D: 1/False, DE: 5/False, P: 1/True, PE: 5/True.
            objective: the training loss; default GaussianNLL for probabilistic models, MSE otherwise.
            lr: Adam's learning rate.
            weight_decay: L2 coefficient on the weights (Adam's coupled weight decay: the gradient of
                wd/2 |W|^2 is added), one for all layers or one per layer (the `depth` hidden layers,
                then the output layer), as PETS decays each layer by its own amount (docs/objectives.md).
            env_kwargs: the env's settings (linked from `env.kwargs`), e.g. the cartpole's x_goal: the
                reward the controller plans for when this model is evaluated.
        """
        super().__init__()
        require_at_least_one("model", members=members, width=width, depth=depth)
        if not lr > 0:
            raise ObjmmError(f"model.lr must be positive, got {lr}")
        decays = weight_decay if isinstance(weight_decay, list) else [weight_decay] * (depth + 1)
        if len(decays) != depth + 1 or min(decays) < 0:
            raise ObjmmError(
                f"model.weight_decay must be one number >= 0 or {depth + 1} (one per layer), got {weight_decay}"
            )
        self.save_hyperparameters(ignore=["objective"])
        self.model = DynamicsModel(env_id, members, width, depth, probabilistic)
        self.objective = objective or (GaussianNLL() if probabilistic else MSE())
        if self.objective.needs_variance and not probabilistic:
            raise ObjmmError(
                f"objective {type(self.objective).__name__} needs a probabilistic model; set model.probabilistic: true"
            )
        self.layer_decays = decays
        self.env_kwargs = dict(env_kwargs or {})
        self.objective.bind(self.model.task, self.env_kwargs)
        self.objective.attach(self.model)
        self.val_names: list[str] = []
        self._val: list[MetricsAccumulator] = []

    # ----------------------------------------------------------------- fitting
    def on_fit_start(self) -> None:
        train_set = self.trainer.datamodule.train_set
        self.model.fit_normaliser(train_set.data["obs"], train_set.data["action"])
        self.objective.on_fit_start(train_set)

    def _check_finite(self, loss: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss):
            raise ObjmmError(
                f"the {self.objective.name} loss became {loss.item()} at epoch {self.current_epoch}, "
                f"step {self.global_step} ({where}); lower model.lr or check the data"
            )

    def batch_loss(self, batch: TensorDictBase) -> torch.Tensor:
        """The training loss of one [members, batch] batch: the objective's mean over members and rows,
        plus PETS's log-variance bound term for an objective that reads the variance."""
        prediction = self.model(batch["obs"], batch["action"])
        target = self.model.targets(batch["obs"], batch["next_obs"])
        loss = self.objective(prediction, target, batch).mean()
        if self.objective.needs_variance:
            loss = loss + self.model.net.logvar_bound_penalty()
        return loss

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets plain attributes on the module around every hook it calls (`_current_fx_name`,
        # ~40 times a training step); torch's Module.__setattr__ checks each against the parameters,
        # submodules and buffers first (~4 us a call, 0.18 ms of a 1.3 ms step of a small model). An
        # attribute already in __dict__ is none of those, so a value that is not one goes straight in,
        # exactly where torch would have put it.
        if name in self.__dict__ and not isinstance(value, (torch.Tensor, torch.nn.Module)):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def training_step(self, batch: TensorDictBase, batch_idx: int) -> torch.Tensor:
        loss = self.batch_loss(batch)
        # self.log costs ~0.6 ms a call (a third of a small model's step), so the per-step curve is
        # logged every log_every_n_steps and the epoch mean is summed here and logged once an epoch.
        # The finiteness check reads the loss back from the device, so it runs only on those steps
        # (and on the epoch mean): a NaN loss stops the run within log_every_n_steps steps.
        self._epoch_loss_sum += loss.detach()
        self._epoch_batches += 1
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self._check_finite(loss, "training")
            # Lightning turns a progress-bar value into a number at every step's end, logged or not
            # (`.item()` on what was logged last): on a GPU a host sync a step. So the value is put
            # in the bar only where there is one, and is logged from the host (read back once here).
            bar = self.trainer.progress_bar_callback is not None
            self.log("train/loss_step", loss.detach().cpu(), prog_bar=bar, batch_size=batch.batch_size[-1])
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_loss_sum = torch.zeros((), device=self.device)
        self._epoch_batches = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_batches:
            epoch_loss = self._epoch_loss_sum / self._epoch_batches
            self._check_finite(epoch_loss, "training, epoch mean")
            self.log("train/loss", epoch_loss)

    # ----------------------------------------------------------------- validation (training/metrics.py)
    def on_validation_epoch_start(self) -> None:
        self.val_names = list(getattr(self.trainer.datamodule, "val_names", ["val"]))
        self._val = [MetricsAccumulator() for _ in self.val_names]

    def validation_step(self, batch: TensorDictBase, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._val[dataloader_idx].update(row_metrics(self.model, self.objective, batch))

    def on_validation_epoch_end(self) -> None:
        for name, accumulator in zip(self.val_names, self._val, strict=True):
            metrics = {f"{name}/{key}": value for key, value in accumulator.compute().items()}
            self.log_dict(metrics, add_dataloader_idx=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The objective goes into a checkpoint too (hparams leave it out), so `load_model` reads a
        checkpoint as it reads a saved model."""
        checkpoint["objective"] = self.objective.spec()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer({name: p for name, p in self.named_parameters()})

    def optimizer(self, parameters: dict[str, torch.Tensor]) -> torch.optim.Optimizer:
        """Adam over `parameters` (this module's names -> tensors: its own, or K modules' stacked), each
        layer's weights decayed by its own `weight_decay`, the rest not at all."""
        decayed = [f"model.net.{'head' if i == len(self.layer_decays) - 1 else f'hidden.{i}'}.weight"
                   for i in range(len(self.layer_decays))]  # fmt: skip
        groups = [
            {"params": [parameters[n]], "weight_decay": d} for n, d in zip(decayed, self.layer_decays, strict=True)
        ]
        rest = [p for n, p in parameters.items() if n not in decayed]
        return torch.optim.Adam([*groups, {"params": rest, "weight_decay": 0.0}], lr=self.hparams.lr)
