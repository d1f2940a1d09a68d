import pytest
import torch

from objmm.models import DynamicsModel, EnsembleMLP

CARTPOLE = "objmm/PETSCartpole-v0"


def test_shapes_shared_and_per_member_inputs(device):
    net = EnsembleMLP(6, 4, members=3, width=16, depth=2, probabilistic=True).to(device)
    shared = net(torch.randn(10, 6, device=device))
    per_member = net(torch.randn(3, 10, 6, device=device))
    for prediction in (shared, per_member):
        assert prediction.mean.shape == prediction.logvar.shape == (3, 10, 4)
        assert prediction.mean.device.type == device.type
    deterministic = EnsembleMLP(6, 4, members=3, width=16, probabilistic=False).to(device)
    assert deterministic(torch.randn(10, 6, device=device)).logvar is None


def test_members_are_independent(device):
    net = EnsembleMLP(6, 4, members=4, width=16, depth=2).to(device)
    x = torch.randn(4, 10, 6, device=device)
    net(x).mean[2].sum().backward()  # a loss on member 2 only
    for layer in [*net.hidden, net.head]:
        grad = layer.weight.grad
        assert grad[2].abs().sum() > 0
        assert grad[[0, 1, 3]].abs().sum() == 0


def test_each_member_computes_its_own_mlp(device):
    net = EnsembleMLP(6, 4, members=3, width=16, depth=2, probabilistic=False).to(device)
    x = torch.randn(3, 5, 6, device=device)
    out = net(x).mean
    for m in range(3):
        h = x[m]
        for layer in net.hidden:
            h = torch.nn.functional.silu(h @ layer.weight[m] + layer.bias[m])
        assert torch.allclose(out[m], h @ net.head.weight[m] + net.head.bias[m], atol=1e-5)


def test_logvar_stays_inside_the_learned_bounds(device):
    net = EnsembleMLP(6, 4, members=2, width=16).to(device)
    logvar = net(torch.randn(1000, 6, device=device) * 100).logvar
    # soft bounds: softplus lets values pass a bound by at most ~exp(-(max - min)) = 3e-5
    assert (logvar <= net.max_logvar + 1e-4).all() and (logvar >= net.min_logvar - 1e-4).all()


def test_model_predicts_deltas_and_averages_members(device):
    model = DynamicsModel(CARTPOLE, members=3, width=16).to(device)
    obs, action = torch.randn(8, 4, device=device), torch.randn(8, 1, device=device)
    next_obs = torch.randn(8, 4, device=device)
    assert torch.allclose(model.targets(obs, next_obs), next_obs - obs)
    expected = obs + model(obs, action).mean.mean(0)
    assert torch.allclose(model.predict_next(obs, action), expected)


def test_normaliser_standardises_the_training_inputs(device):
    model = DynamicsModel(CARTPOLE, members=1, width=8).to(device)
    obs, action = torch.randn(500, 4, device=device) * 3 + 1, torch.rand(500, 1, device=device) * 6 - 3
    model.fit_normaliser(obs, action)
    x = (model._raw_inputs(obs, action) - model.input_mean) / model.input_std
    assert torch.allclose(x.mean(0), torch.zeros(6, device=device), atol=1e-5)
    assert torch.allclose(x.std(0), torch.ones(6, device=device), atol=1e-4)


@pytest.mark.parametrize("members,probabilistic", [(1, False), (5, False), (1, True), (5, True)])
def test_d_de_p_pe_are_configs_of_one_model(members, probabilistic, device):
    model = DynamicsModel(CARTPOLE, members=members, width=8, probabilistic=probabilistic).to(device)
    prediction = model(torch.randn(3, 4, device=device), torch.randn(3, 1, device=device))
    assert prediction.mean.shape == (members, 3, 4)
    assert (prediction.logvar is not None) == probabilistic


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_cpu_layer_cuts_rows_to_keep_threads_busy_and_gives_the_same_outputs(two_threads, monkeypatch):
    """5 members on 2 threads: the no-grad forward runs 10 half-row batches against the repeated
    weights (`EnsembleLinear.forward`), equal to the one batched multiply, and follows a weight change."""
    from objmm.models.ensemble import EnsembleLinear

    layer, x, shared = EnsembleLinear(5, 30, 20), torch.randn(5, 64, 30), torch.randn(64, 30)
    batches = []
    baddbmm = torch.baddbmm
    monkeypatch.setattr(torch, "baddbmm", lambda bias, a, w: batches.append(a.shape[0]) or baddbmm(bias, a, w))
    with torch.no_grad():
        for inputs in (x, shared):
            expected = baddbmm(layer.bias, inputs.expand(5, -1, -1), layer.weight)
            assert torch.equal(layer(inputs), expected)
        layer.weight.mul_(2.0)  # an optimiser step or a load changes the weights in place
        assert torch.equal(layer(x), baddbmm(layer.bias, x, layer.weight))
        assert torch.equal(layer(x[:, :63]), baddbmm(layer.bias, x[:, :63], layer.weight))  # odd rows: one batch
    assert batches == [10, 10, 10, 5]
    with torch.enable_grad():  # training keeps the plain multiply (and its gradients)
        layer(x).sum().backward()
    assert batches[-1] == 5 and layer.weight.grad is not None


@pytest.mark.parametrize("members", [5, 2], ids=["in parts", "whole"])
def test_a_cpu_layer_under_bfloat16_autocast_casts_its_weights_once_and_gives_autocast_s_outputs(
    two_threads, monkeypatch, members
):
    """`cem.precision: bfloat16` on a CPU: the layer's weights are cast once and kept (autocast casts
    them at every call), with the same outputs to the bit as autocast's own casts; a weight changed
    in place is cast again."""
    from objmm.models.ensemble import EnsembleLinear

    layer, x = EnsembleLinear(members, 30, 20), torch.randn(members, 64, 30)
    casts = []
    to = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: casts.append(a) or to(self, *a, **k))

    def autocast_s_own() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.baddbmm(layer.bias, x, layer.weight)

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        first, second = layer(x), layer(x)
        assert len(casts) == 2  # weight and bias, once for both calls
        layer.weight.mul_(2.0)
        third = layer(x)
        assert len(casts) == 4
    assert first.dtype == torch.bfloat16 and torch.equal(first, second)
    assert torch.equal(third, autocast_s_own())
    with torch.no_grad():
        layer.weight.div_(2.0)
    assert torch.equal(first, autocast_s_own())
