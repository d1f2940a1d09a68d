import torch
from tensordict import TensorDict

from objmm.models import Prediction
from objmm.objectives import MSE, GaussianNLL


def test_nll_equals_the_gaussian_log_density(device):
    mean, logvar, target = (torch.randn(3, 7, 4, device=device) for _ in range(3))
    logvar = logvar * 0.5
    batch = TensorDict({}, batch_size=[7], device=device)
    loss = GaussianNLL()(Prediction(mean, logvar), target, batch)
    expected = -torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(target).sum(-1)
    assert loss.shape == (3, 7)
    assert torch.allclose(loss, expected, atol=1e-5)


def test_nll_by_hand_for_one_number():
    # N(1 | 0, e^0): 0.5 * (1 + 0 + log 2pi) = 1.4189385
    loss = GaussianNLL()(Prediction(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1)), torch.ones(1, 1, 1), None)
    assert abs(loss.item() - 1.4189385) < 1e-6


def test_mse_is_the_mean_squared_error_per_row(device):
    mean = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]], device=device)
    target = torch.tensor([[[1.0, 3.0], [1.0, 1.0]]], device=device)
    loss = MSE()(Prediction(mean, None), target, None)
    assert torch.equal(loss, torch.tensor([[5.0, 0.0]], device=device))
