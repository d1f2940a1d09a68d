"""A batched ensemble MLP: every layer is one batched matmul over `[members, batch, features]`.

This is objmm's one network forward: a model's ensemble, K models stacked as one ensemble of
K x members (`StackedDynamics`), and the attack's candidate output layers (`head=`) all go through
`EnsembleMLP.forward`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F


class Prediction(NamedTuple):
    """mean [E, B, D]; logvar [E, B, D] for a probabilistic model, None for a deterministic one."""

    mean: torch.Tensor
    logvar: torch.Tensor | None


def ensemble_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [E, B, in] -> [E, B, out] with weight [E, in, out], bias [E, 1, out]; x [B, in] is shared by
    every member (broadcast, no copy)."""
    if x.dim() == 2:  # one fused multiply-add, as for [E, B, in] (matmul then + bias is two passes)
        x = x.expand(weight.shape[0], *x.shape)
    return torch.baddbmm(bias, x, weight)


def autocast_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype autocast computes a matmul with `weight` in here: its own where autocast is on for
    the weight's device and lowers float32 (bfloat16 planning), else the weight's."""
    device = weight.device.type
    if weight.dtype == torch.float32 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return weight.dtype


class EnsembleLinear(nn.Module):
    """`members` independent linear layers. weight [E, in, out], bias [E, 1, out]."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_features))
        self._planning: tuple | None = None  # (key, weight, bias): `planning_weights`
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PETS's initialisation: truncated normal with std 1 / (2 sqrt(fan_in)), zero bias (drawn from
        `generator`, else torch's global one, as every torch module's own initialisation)."""
        std = 1.0 / (2.0 * math.sqrt(self.weight.shape[1]))
        nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std, generator=generator)
        self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [E, B, in] -> [E, B, out]; x [B, in] is shared by every member (broadcast, no copy)."""
        if x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.compiler.is_compiling():
            return self.cpu_forward(x)
        return ensemble_linear(x, self.weight, self.bias)

    def cpu_forward(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` without gradients on a CPU. MKL's batched GEMM hands each thread whole members:
        5 members on 2 threads leave one idle a fifth of the time. So where there are more members
        than threads and they do not divide among them, each member's rows are cut into one part a
        thread, against the weights repeated per part: every thread busy with the same products
        (docs/benchmarks.md: Table 1's steps about 0.9x on 2 cores, every action equal). One member is
        left whole: MKL splits its one GEMM itself. Under bfloat16 autocast (`cem.precision`) the
        weights come already cast (`planning_weights`)."""
        members, threads, rows = self.weight.shape[0], torch.get_num_threads(), x.shape[-2]
        parts = members > threads and members % threads and not rows % threads
        weight, bias = self.planning_weights(threads if parts else 1, autocast_dtype(self.weight))
        if not parts:
            return ensemble_linear(x, weight, bias)
        x = (x if x.dim() == 3 else x.expand(members, *x.shape)).reshape(members * threads, rows // threads, -1)
        return torch.baddbmm(bias, x, weight).view(members, rows, -1)

    def planning_weights(self, times: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """weight and bias with each member repeated `times` times in a row, in `dtype`, kept until
        either changes (an optimiser step or a load bumps a tensor's version; a move makes a new
        tensor): planning calls a model thousands of times a step with the same weights. Autocast
        would cast them at every call (it keeps a cast only of a leaf that requires grad): 40% of a
        bfloat16 step's time on a CPU. The cast is the one autocast makes, so the results are its own."""
        if times == 1 and dtype == self.weight.dtype:
            return self.weight, self.bias
        key = (times, dtype, self.weight.data_ptr(), self.weight._version, self.bias.data_ptr(), self.bias._version)
        if self._planning is None or self._planning[0] != key:
            with torch.no_grad():
                weight, bias = self.weight.repeat_interleave(times, 0), self.bias.repeat_interleave(times, 0)
                self._planning = (key, weight.to(dtype), bias.to(dtype))
        return self._planning[1], self._planning[2]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_planning": None}  # a copy or a pickle (a Ray task) makes its own


class EnsembleMLP(nn.Module):
    """`depth` hidden layers of `width` SiLU units, per member.

    Probabilistic: the output holds mean and log-variance, the latter softly bounded by learned
    `max_logvar` / `min_logvar` (PETS). Deterministic: the output is the mean only.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        members: int = 5,
        width: int = 200,
        depth: int = 2,
        probabilistic: bool = True,
    ):
        super().__init__()
        self.members, self.out_dim, self.probabilistic = members, out_dim, probabilistic
        sizes = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.head = EnsembleLinear(members, width, out_dim * (2 if probabilistic else 1))
        if probabilistic:
            self.max_logvar = nn.Parameter(torch.full((out_dim,), 0.5))
            self.min_logvar = nn.Parameter(torch.full((out_dim,), -10.0))

    @classmethod
    def stacked(cls, nets: list[EnsembleMLP]) -> EnsembleMLP:
        """K networks of one shape as one ensemble of K x members, member k * members + m being
        network k's member m. For the mean (planning): the log-variance bounds are network 0's."""
        first = nets[0]
        sizes = [first.hidden[0].weight.shape[1], first.head.weight.shape[1], len(first.hidden)]
        with torch.device("meta"):  # no initialisation drawn (it would move the global random state)
            net = cls(sizes[0], first.out_dim, first.members * len(nets), sizes[1], sizes[2], first.probabilistic)
        net = net.to_empty(device=first.head.weight.device)
        with torch.no_grad():
            for i, layer in enumerate(net.layers):
                layer.weight.copy_(torch.cat([n.layers[i].weight for n in nets]))
                layer.bias.copy_(torch.cat([n.layers[i].bias for n in nets]))
            if first.probabilistic:
                net.max_logvar.copy_(first.max_logvar)
                net.min_logvar.copy_(first.min_logvar)
        return net.requires_grad_(False)

    @property
    def layers(self) -> list[EnsembleLinear]:
        """The hidden layers, then the output head."""
        return [*self.hidden, self.head]

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.layers:
            layer.reset_parameters(generator)
        if self.probabilistic:
            self.max_logvar.fill_(0.5)
            self.min_logvar.fill_(-10.0)

    def forward(
        self, x: torch.Tensor, mean_only: bool = False, head: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> Prediction:
        """x [E, B, in] or [B, in] -> Prediction with [E, B, out] tensors.

        `mean_only` skips the log-variance (planning with expectation propagation needs only the mean).
        `head` (weight [E, width, out'], bias [E, 1, out']) stands in for the output layer: another
        candidate head (the attack); one of the mean columns only (out' = out_dim) needs `mean_only`.
        """
        features = self.features(x)
        if head is None and mean_only and self.probabilistic:  # the mean columns alone (planning)
            head = (self.head.weight[..., : self.out_dim], self.head.bias[..., : self.out_dim])
        out = self.head(features) if head is None else ensemble_linear(features, *head)
        if not self.probabilistic:
            return Prediction(out, None)
        if mean_only:
            return Prediction(out[..., : self.out_dim], None)
        mean, raw = out.split(self.out_dim, dim=-1)
        return Prediction(mean, self.bounded_logvar(raw))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations, what the head reads: [E, B, width]."""
        in_place = not torch.is_grad_enabled()  # no graph to keep the pre-activations for
        for layer in self.hidden:
            x = F.silu(layer(x), inplace=in_place)
        return x

    def bounded_logvar(self, raw: torch.Tensor) -> torch.Tensor:
        """The head's raw log-variance outputs, softly bounded by `min_logvar` and `max_logvar`."""
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw)
        return self.min_logvar + F.softplus(logvar - self.min_logvar)

    def logvar_bound_penalty(self) -> torch.Tensor:
        """PETS's term that keeps the learned log-variance bounds tight (0 if deterministic)."""
        if not self.probabilistic:
            return torch.zeros((), device=self.head.weight.device)
        return 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
