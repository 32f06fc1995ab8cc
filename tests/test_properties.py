"""Property-based tests (hypothesis) of the reference primitives."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradbasics import ChainModel, FrozenFirstModel, batched_loss, train_loop
from helpers import assert_same_bits, params_of

finite = st.floats(-4.0, 4.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 40),
    width=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    weights=st.tuples(finite, finite, finite),
)
def test_batch_of_all_rows_equals_the_full_loss(
    n: int, width: int, seed: int, weights: tuple[float, float, float]
) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, width, generator=gen, dtype=torch.float64)
    t = torch.randn(n, width, generator=gen, dtype=torch.float64)
    model = ChainModel(*weights, dtype=torch.float64)
    full = batched_loss(model, x, t)
    shuffled = batched_loss(model, x, t, n, generator=gen)
    torch.testing.assert_close(shuffled, full, rtol=1e-12, atol=1e-300)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30),
    batch=st.integers(1, 30),
    seed=st.integers(0, 2**16),
    record=st.booleans(),
)
def test_train_loop_is_deterministic_for_a_seeded_generator(
    n: int, batch: int, seed: int, record: bool
) -> None:
    batch = min(batch, n)
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    t = x.sum(1, keepdim=True)
    runs = []
    for _ in range(2):
        torch.manual_seed(seed)
        model = torch.nn.Linear(2, 1)
        gen = torch.Generator().manual_seed(seed + 1)
        history = train_loop(
            model, x, t, epochs=3, lr=0.05, batch_size=batch, generator=gen, record=record
        )
        runs.append((history, params_of(model)))
    assert runs[0][0].losses == runs[1][0].losses
    assert_same_bits(runs[0][1], runs[1][1])
    for k, v in runs[0][0].activations.items():
        assert torch.equal(v, runs[1][0].activations[k])


@settings(max_examples=50, deadline=None)
@given(weights=st.tuples(finite, finite, finite), xs=st.lists(finite, min_size=1, max_size=5))
def test_recorded_chain_activations_equal_their_closed_forms(
    weights: tuple[float, float, float], xs: list[float]
) -> None:
    w1, w2, w3 = weights
    model = ChainModel(w1, w2, w3, dtype=torch.float64)
    x = torch.tensor(xs, dtype=torch.float64)
    history = train_loop(model, x, torch.zeros_like(x), epochs=1, lr=0.0, record=True)
    acts = {k: v[0].tolist() for k, v in history.activations.items()}
    h1 = [w1 * v for v in xs]
    h2 = [max(w2 * h, 0.0) for h in h1]
    assert acts["input"] == xs
    assert acts["hidden1"] == pytest.approx(h1, rel=1e-15, abs=0)
    assert acts["hidden2"] == pytest.approx(h2, rel=1e-15, abs=0)
    assert acts["output"] == pytest.approx([w3 * h for h in h2], rel=1e-15, abs=0)


@pytest.mark.filterwarnings("ignore::gradbasics.DeadUnitsWarning")  # x = 0 is a case here
@settings(max_examples=30, deadline=None)
@given(w1=finite, w2=finite, x=finite, epochs=st.integers(1, 6), lr=st.floats(0.0, 0.1))
def test_recorded_frozen_first_activations_follow_the_closed_form(
    w1: float, w2: float, x: float, epochs: int, lr: float
) -> None:
    model = FrozenFirstModel(w1=w1, w2=w2, dtype=torch.float64)
    xt = torch.tensor([x], dtype=torch.float64)
    history = train_loop(
        model, xt, torch.tensor([1.0], dtype=torch.float64), epochs=epochs, lr=lr, record=True
    )
    # Closed form of each epoch's output before its update: w2 evolves by
    # w2 <- w2 - lr * 2 (w2 h - 1) h with h = w1 x.
    h, w = w1 * x, w2
    outs = []
    for _ in range(epochs):
        outs.append(w * h)
        w = w - lr * 2 * (w * h - 1.0) * h
    assert history.activations["hidden"][:, 0].tolist() == pytest.approx([h] * epochs, rel=1e-15)
    assert history.activations["output"][:, 0].tolist() == pytest.approx(outs, rel=1e-9, abs=1e-12)
