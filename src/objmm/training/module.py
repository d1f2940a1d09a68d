"""The LightningModule that fits a dynamics model with a pluggable objective."""

from __future__ import annotations

import lightning as L
import torch
from tensordict import TensorDictBase

from objmm.errors import ObjmmError
from objmm.models import DynamicsModel
from objmm.objectives import MSE, GaussianNLL, Objective, gaussian_nll, squared_error


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
        weight_decay: float = 0.0,
    ):
        """
        Args:
            env_id: the objmm env (linked from `data.env_id` by the CLI).
            members, width, depth, probabilistic: the ensemble. D: 1/False, DE: 5/False, P: 1/True, PE: 5/True.
            objective: the training loss; default GaussianNLL for probabilistic models, MSE otherwise.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["objective"])
        self.model = DynamicsModel(env_id, members, width, depth, probabilistic)
        self.objective = objective or (GaussianNLL() if probabilistic else MSE())
        if self.objective.needs_variance and not probabilistic:
            raise ObjmmError(
                f"objective {type(self.objective).__name__} needs a probabilistic model; set model.probabilistic: true"
            )
        self.val_names: list[str] = []

    # ----------------------------------------------------------------- fitting
    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        rows = datamodule.train_set.data
        self.model.fit_normaliser(rows["obs"], rows["action"])

    def _check_finite(self, loss: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss):
            raise ObjmmError(
                f"the {self.objective.name} loss became {loss.item()} at epoch {self.current_epoch}, "
                f"step {self.global_step} ({where}); lower model.lr or check the data"
            )

    def training_step(self, batch: TensorDictBase, batch_idx: int) -> torch.Tensor:
        prediction = self.model(batch["obs"], batch["action"])
        target = self.model.targets(batch["obs"], batch["next_obs"])
        loss = self.objective(prediction, target, batch).mean()
        if self.objective.needs_variance:
            loss = loss + self.model.net.logvar_bound_penalty()
        # self.log costs ~0.6 ms a call (a third of a small model's step), so the per-step curve is
        # logged every log_every_n_steps and the epoch mean is summed here and logged once an epoch.
        # The finiteness check reads the loss back from the device, so it runs only on those steps
        # (and on the epoch mean): a NaN loss stops the run within log_every_n_steps steps.
        self._epoch_loss_sum += loss.detach()
        self._epoch_batches += 1
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self._check_finite(loss, "training")
            self.log("train/loss_step", loss, prog_bar=True, batch_size=batch.batch_size[-1])
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_loss_sum = torch.zeros((), device=self.device)
        self._epoch_batches = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_batches:
            epoch_loss = self._epoch_loss_sum / self._epoch_batches
            self._check_finite(epoch_loss, "training, epoch mean")
            self.log("train/loss", epoch_loss)

    def on_validation_epoch_start(self) -> None:
        datamodule = self.trainer.datamodule
        self.val_names = list(getattr(datamodule, "val_names", ["val"]))
        self.trajectory_batches = getattr(datamodule, "val_batches", "random") == "trajectory"

    def validation_step(self, batch: TensorDictBase, batch_idx: int, dataloader_idx: int = 0) -> None:
        name = self.val_names[dataloader_idx]
        prediction = self.model(batch["obs"], batch["action"])
        target = self.model.targets(batch["obs"], batch["next_obs"])
        # trajectory batches: every trajectory counts once, whatever its length (appendix C)
        weight = 1 if self.trajectory_batches else batch.batch_size[0]
        metrics = {f"{name}/mse": squared_error(prediction.mean, target).mean()}
        if self.model.probabilistic:
            metrics[f"{name}/nll"] = gaussian_nll(prediction.mean, prediction.logvar, target).mean()
        self.log_dict(metrics, batch_size=weight, add_dataloader_idx=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
