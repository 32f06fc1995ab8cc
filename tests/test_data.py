from __future__ import annotations

import pytest
import torch

from gradbasics import ChainModel, FrozenFirstModel, batched_loss, mse_loss


def _data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return x.to(device), (2 * x + 1).to(device)


def test_full_batch_loss_equals_closed_form(device: torch.device) -> None:
    x, t = _data(10, device)
    model = ChainModel(0.5, 2.0, -1.0, device=device, dtype=torch.float64)
    expected = ((-1.0 * torch.relu(2.0 * (0.5 * x)) - t) ** 2).sum() / t.numel()
    torch.testing.assert_close(batched_loss(model, x, t), expected, rtol=1e-15, atol=0)


def test_random_batch_is_the_first_rows_of_a_cpu_permutation(device: torch.device) -> None:
    x, t = _data(20, device)
    model = FrozenFirstModel(w1=1.5, w2=0.5, device=device, dtype=torch.float64)
    loss = batched_loss(model, x, t, 6, generator=torch.Generator().manual_seed(3))
    rows = torch.randperm(20, generator=torch.Generator().manual_seed(3))[:6].tolist()
    xb, tb = x.cpu()[rows], t.cpu()[rows]
    expected = ((0.5 * 1.5 * xb - tb) ** 2).mean()
    torch.testing.assert_close(loss.cpu(), expected, rtol=1e-15, atol=0)


@pytest.mark.cuda
def test_cpu_and_cuda_see_the_same_batch() -> None:
    x, t = _data(50, torch.device("cpu"))
    losses = []
    for dev in ("cpu", "cuda"):
        model = FrozenFirstModel(w1=1.5, w2=0.5, device=dev, dtype=torch.float64)
        gen = torch.Generator().manual_seed(11)
        losses.append(batched_loss(model, x.to(dev), t.to(dev), 5, generator=gen).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)


def test_batch_size_n_equals_full_loss() -> None:
    x, t = _data(9, torch.device("cpu"))
    model = FrozenFirstModel(w1=1.0, w2=3.0, dtype=torch.float64)
    full = batched_loss(model, x, t)
    perm = batched_loss(model, x, t, 9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(perm, full, rtol=1e-14, atol=0)


def test_loss_is_differentiable() -> None:
    model = FrozenFirstModel(w1=2.0, w2=1.0)
    batched_loss(model, torch.tensor([1.0]), torch.tensor([0.0])).backward()
    # d/dw2 (w2 w1 x - t)^2 = 2 (2 - 0) * 2 = 8
    assert model.w2.grad is not None and model.w2.grad.item() == 8.0


def test_custom_loss_fn_and_integer_targets() -> None:
    model = torch.nn.Linear(2, 3)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 2, 1, 0])
    loss = batched_loss(model, x, t, loss_fn=torch.nn.functional.cross_entropy)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(model(x), t))


def test_mse_loss_refuses_broadcasting() -> None:
    with pytest.raises(ValueError, match=r"targets must have the shape .*\(4, 1\).*got \(4,\)"):
        mse_loss(torch.zeros(4, 1), torch.zeros(4))
