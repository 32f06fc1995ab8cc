"""The sync-free path (losses read once per epoch, non-finite steps masked on the device).

It runs on GPUs; here it is forced on the CPU too, where it must give the same bits as the
per-step path, and on CUDA it must not synchronise between two loss reads.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import gradbasics.training as training
from gradbasics import (
    ChainModel,
    DivergenceError,
    legacy_data_step,
    manual_sgd_step,
    train_loop,
)
from helpers import assert_same_bits, hand_chain_loop, params_of


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the once-per-epoch loss reads and masked updates on every device."""
    monkeypatch.setattr(training, "_losses_stay_on_device", lambda *args: True)


def _linear_run(
    update: object, batch_size: int | None
) -> tuple[list[float], dict[str, torch.Tensor]]:
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    t = x.sum(1, keepdim=True)
    torch.manual_seed(2)
    model = torch.nn.Linear(3, 1)
    history = train_loop(
        model,
        x,
        t,
        epochs=4,
        lr=0.05,
        update=update,  # type: ignore[arg-type]
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(3),
        record=True,
    )
    return history.losses, params_of(model)


@pytest.mark.parametrize("update", [manual_sgd_step, legacy_data_step])
@pytest.mark.parametrize("batch_size", [None, 7])
def test_deferred_reads_give_the_same_bits(
    monkeypatch: pytest.MonkeyPatch, update: object, batch_size: int | None
) -> None:
    eager = _linear_run(update, batch_size)
    monkeypatch.setattr(training, "_losses_stay_on_device", lambda *args: True)
    deferred = _linear_run(update, batch_size)
    assert eager[0] == deferred[0]
    assert_same_bits(eager[1], deferred[1])


@pytest.mark.usefixtures("deferred")
def test_deferred_divergence_keeps_the_last_finite_step(device: torch.device) -> None:
    model = ChainModel(device=device)
    x, t = torch.tensor([2.0], device=device), torch.tensor([1.0], device=device)
    with pytest.raises(DivergenceError) as info:
        train_loop(model, x, t, epochs=100, lr=0.01)
    ws, losses = hand_chain_loop(x, t, epochs=2, lr=0.01)
    assert info.value.epoch == 2
    assert info.value.history.losses == losses
    for p, w in zip(model.parameters(), ws, strict=True):
        assert torch.equal(p.detach(), w)


@pytest.mark.usefixtures("deferred")
def test_deferred_mid_epoch_divergence_masks_every_later_step() -> None:
    # Row 2 overflows; once its loss is inf, the later finite batches must not update.
    x = torch.tensor([[1.0], [1.0], [1e30], [1.0], [1.0]])
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.5)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()
    bad_at = order.index(2)
    with pytest.raises(DivergenceError) as info:
        train_loop(model, x, torch.zeros(5, 1), epochs=2, lr=0.1, batch_size=1, generator=gen)
    # Oracle: w <- w - 0.1 * 2 w x^2 (x = 1) for each batch before the bad one: w * 0.8^k.
    assert info.value.epoch == 0
    assert model.weight.item() == pytest.approx(0.5 * 0.8**bad_at, rel=1e-6)
    assert info.value.last_finite_loss == (
        None if bad_at == 0 else pytest.approx((0.5 * 0.8 ** (bad_at - 1)) ** 2, rel=1e-6)
    )


@pytest.mark.cuda
@pytest.mark.parametrize("batch_size", [None, 8])
@pytest.mark.parametrize("record", [False, True])
def test_cuda_train_loop_makes_no_hidden_sync(batch_size: int | None, record: bool) -> None:
    x = torch.randn(64, 1, generator=torch.Generator().manual_seed(0))
    t = 3 * x
    model = ChainModel(0.5, 0.5, 0.5, device="cuda")
    seen: list[int] = []

    def callback(epoch: int, history: object) -> None:
        seen.append(epoch)
        if epoch == 2:
            # The mode is really on: a sync of the user's own raises.
            with pytest.raises(RuntimeError):
                model.w1.sum().item()

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        history = train_loop(
            model,
            x,
            t,
            epochs=5,
            lr=1e-3,
            batch_size=batch_size,
            record=record,
            generator=torch.Generator().manual_seed(1),
            callbacks=[callback],
        )
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert seen == [0, 1, 2, 3, 4]
    assert len(history.losses) == 5
    # Oracle: the same run on the CPU.
    ref = ChainModel(0.5, 0.5, 0.5)
    ref_h = train_loop(
        ref,
        x,
        t,
        epochs=5,
        lr=1e-3,
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(1),
    )
    assert history.losses == pytest.approx(ref_h.losses, rel=1e-5)


@pytest.mark.cuda
def test_cuda_divergence_is_caught_without_a_per_step_sync() -> None:
    model = ChainModel(device="cuda")
    x, t = torch.tensor([2.0], device="cuda"), torch.tensor([1.0], device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(DivergenceError) as info:
            train_loop(model, x, t, epochs=100, lr=0.01)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert info.value.epoch == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_memory_stays_flat_over_5000_recorded_epochs() -> None:
    import gc

    counts: dict[int, int] = {}

    def count_tensors(epoch: int, history: object) -> None:
        if epoch in (999, 4_999):
            gc.collect()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                counts[epoch] = sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    model = ChainModel()
    x, t = torch.tensor([2.0]), torch.tensor([1.0])
    history = train_loop(model, x, t, epochs=5_000, lr=1e-4, record=True, callbacks=[count_tensors])
    # Nothing accumulates per step: as many live tensors after 5,000 epochs as after 1,000
    # (a pile of one tensor an epoch would leave 4,000 more).
    assert counts[4_999] == counts[999]
    assert len(history.losses) == 5_000
    for rows in history.activations.values():
        assert rows.shape == (5_000, 1)
        assert rows.grad_fn is None
        assert not rows.requires_grad


@pytest.mark.usefixtures("deferred")
def test_deferred_mask_stays_off_for_every_step_after_an_early_bad_row() -> None:
    # The bad row comes second of five, so three finite steps follow it in the same
    # epoch: none of them may update (a mask that turned back on would let them).
    order = torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()
    x = torch.ones(5, 1)
    x[order[1]] = 1e30
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.5)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(DivergenceError) as info:
        train_loop(model, x, torch.zeros(5, 1), epochs=2, lr=0.1, batch_size=1, generator=gen)
    assert info.value.epoch == 0
    assert model.weight.item() == pytest.approx(0.5 * 0.8, rel=1e-6)  # the first step only


def test_losses_stay_on_the_device_only_for_the_built_in_rules_off_the_cpu() -> None:
    # An optimizer's step cannot be masked: it must read each loss before its update.
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    assert training._losses_stay_on_device(cuda, None, manual_sgd_step)
    assert training._losses_stay_on_device(cuda, None, legacy_data_step)
    assert not training._losses_stay_on_device(cuda, opt, manual_sgd_step)
    assert not training._losses_stay_on_device(cpu, None, manual_sgd_step)
    assert not training._losses_stay_on_device(cuda, None, lambda ps, lr: None)
