"""A function of CUDA tensors captured once as one CUDA graph and replayed on each call.

The planner's step (`CEMConfig.cuda_graph`) is a few hundred small kernels (every CEM iteration,
every step of the horizon's rollout, the reward, the elite update); on a GPU, launching them from
Python costs more than running them when one episode is planned. Replaying a captured graph
launches them all at once. torch has the pieces (`torch.cuda.CUDAGraph`, the graph's private memory
pool, random generators registered with the graph) but no wrapper for a function whose random
streams must go on exactly as they would without the graph, hence this one.
`torch.compile(mode="reduce-overhead")` would capture the same graph, but it compiles for minutes
and again for every new model (a PETS run builds its planner anew each trial); a capture is one
warm-up call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Tensors = Sequence[torch.Tensor | None]


class CapturedCall:
    """`function(*inputs)` -> a tuple of tensors (or None), captured for inputs of these shapes.

    Calling it copies the new inputs into the captured ones, replays the graph and returns copies of
    its outputs. `generators` are the random generators the function draws from: each replay draws
    what the function would have drawn without the graph, and leaves them where it would have (the
    warm-up call before the capture puts their states back). The function must not read a tensor's
    value on the host (no `.item()`, no branching on values), and the tensors it reads besides its
    inputs (a model's weights) are read where they are at each replay.
    """

    def __init__(self, function: Callable[..., tuple], inputs: Tensors, generators: Sequence[torch.Generator] = ()):
        self.inputs = [None if x is None else x.clone() for x in inputs]
        states = [g.get_state() for g in generators]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # cuBLAS handles and workspaces are made outside the capture
            function(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        for generator, state in zip(generators, states, strict=True):
            generator.set_state(state)
        self.graph = torch.cuda.CUDAGraph()
        for generator in generators:
            self.graph.register_generator_state(generator)
        with torch.cuda.graph(self.graph):  # records the kernels; nothing runs and no draw is taken
            self.outputs = function(*self.inputs)

    def __call__(self, *inputs: torch.Tensor | None) -> tuple:
        for static, new in zip(self.inputs, inputs, strict=True):
            if static is not None:
                static.copy_(new)
        self.graph.replay()
        return tuple(None if x is None else x.clone() for x in self.outputs)
