"""Third red-team pass on train_loop: loaders, metrics, class-weighted losses, dead units.

Each test failed before its fix; all go through the public keywords only.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import ChainDataset, DataLoader, IterableDataset, TensorDataset

from gradbasics import DeadUnitsWarning, EarlyStopping, TrainHistory, evaluate, train_loop
from gradbasics.callbacks import Callback
from helpers import assert_same_bits, params_of


def _data(rows: int = 20) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(rows, 3, generator=g)
    return x, x.sum(1, keepdim=True)


def _mlp(seed: int = 0, dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(dropout), nn.Linear(4, 1))


def _classes(rows: int = 12) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(rows, 3, generator=g)
    return x, torch.randint(0, 3, (rows,), generator=g)


class _Varying:
    """Batches of 4 rows whose last batch holds 2, then 3, then 1 rows (epochs in turn)."""

    def __init__(self) -> None:
        self.x, self.y = _data(16)
        self.calls = 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self.calls += 1
        rows = 8 + (1 + self.calls % 3)
        for i in range(0, rows, 4):
            end = min(i + 4, rows)
            yield self.x[i:end], self.y[i:end]


# 1. record=True with a last batch whose rows vary between epochs

pytestmark = pytest.mark.filterwarnings("ignore::gradbasics.DeadUnitsWarning")


def test_record_with_a_last_batch_that_varies_between_epochs_keeps_the_statistics() -> None:
    with pytest.warns(UserWarning, match=r"record: .*rows vary"):
        h = train_loop(_mlp(), _Varying(), epochs=5, lr=0.01, record=True)
    assert len(h.losses) == 5
    for stats in h.activation_stats.values():
        assert stats.mean.shape[0] == 5 and not torch.isnan(stats.mean).any()
    assert h.activations == {}  # whole rows of different counts cannot be stacked


def test_record_with_a_varying_last_batch_resumes(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    with pytest.warns(UserWarning, match="rows vary"):
        train_loop(_mlp(), _Varying(), epochs=4, lr=0.01, record=True, checkpoint=path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        h = train_loop(_mlp(), _Varying(), epochs=6, lr=0.01, record=True, checkpoint=path,
                       resume=True)  # fmt: skip
    assert all(s.mean.shape[0] == 6 for s in h.activation_stats.values())


# 2. a DataLoader whose dataset has no len


class _Rows(IterableDataset[tuple[Tensor, Tensor]]):
    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(zip(self.x, self.y, strict=True))


def test_a_loader_whose_dataset_has_no_len_trains_one_pass_per_epoch() -> None:
    x, y = _data(16)
    chained = ChainDataset([_Rows(x[:8], y[:8]), _Rows(x[8:], y[8:])])
    with pytest.raises(TypeError):
        len(chained)
    h = train_loop(_mlp(), DataLoader(chained, batch_size=4), epochs=3, lr=0.01)
    ref = train_loop(_mlp(), DataLoader(TensorDataset(x, y), batch_size=4), epochs=3, lr=0.01)
    assert h.losses == ref.losses


# 3. a loader with no batches


@pytest.mark.parametrize(
    "empty", [[], DataLoader(TensorDataset(torch.empty(0, 3), torch.empty(0, 1)))]
)
def test_a_loader_without_batches_is_refused_naming_inputs(empty: Any) -> None:
    model = _mlp()
    before = params_of(model)
    with pytest.raises(ValueError, match=r"inputs must hold at least one batch"):
        train_loop(model, empty, epochs=2, lr=0.01)
    assert_same_bits(params_of(model), before)


def test_a_val_loader_without_batches_is_refused_naming_val() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match=r"val must hold at least one batch"):
        train_loop(_mlp(), x, y, epochs=2, lr=0.01, val=[])


# 4 and 7. metric results are checked, in training and in validation

_NOT_A_MEAN = r"metrics\['m'\] must return a 0-d tensor .* floating-point dtype"


@pytest.mark.parametrize(
    "result",
    [lambda o, t: (o - t).abs(), lambda o, t: 1.0, lambda o, t: "a",
     lambda o, t: torch.tensor(1), lambda o, t: torch.tensor(True),
     lambda o, t: torch.tensor(1 + 1j)],
    ids=["vector", "float", "str", "int", "bool", "complex"],
)  # fmt: skip
def test_train_metrics_results_are_checked_before_training(result: Any) -> None:
    x, y = _data()
    model, gen = _mlp(), torch.Generator().manual_seed(0)
    before, state = params_of(model), gen.get_state()
    with pytest.raises(TypeError, match=_NOT_A_MEAN):
        train_loop(model, x, y, epochs=2, lr=0.01, batch_size=4, generator=gen,
                   metrics={"m": result}, train_metrics=True)  # fmt: skip
    assert_same_bits(params_of(model), before)
    assert torch.equal(gen.get_state(), state)


def test_train_metrics_check_every_batch() -> None:
    x, y = _data()
    calls = []

    def late(o: Tensor, t: Tensor) -> Tensor:
        calls.append(1)
        return (o - t).abs().mean() if len(calls) < 3 else (o - t).abs()

    with pytest.raises(TypeError, match=r"metrics\['late'\] must return a 0-d"):
        train_loop(_mlp(), x, y, epochs=2, lr=0.01, batch_size=4, metrics={"late": late},
                   train_metrics=True)  # fmt: skip


@pytest.mark.parametrize("value", [torch.tensor(1), torch.tensor(True), torch.tensor(1 + 1j)])
def test_int_bool_and_complex_metric_results_are_refused(value: Tensor) -> None:
    x, y = _data()
    with pytest.raises(TypeError, match=_NOT_A_MEAN):
        evaluate(_mlp(), x, y, metrics={"m": lambda o, t: value})
    with pytest.raises(TypeError, match=_NOT_A_MEAN):
        train_loop(_mlp(), x, y, epochs=1, lr=0.01, val=(x, y), metrics={"m": lambda o, t: value})


# 6. class-weighted or ignore_index cross entropy


def test_a_class_weighted_cross_entropy_is_refused_with_the_reason() -> None:
    x, t = _classes()
    ce = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"weight=.*batch size.*reduction='sum'"):
        train_loop(nn.Linear(3, 3), x, t, epochs=1, lr=0.01, loss_fn=ce)
    with pytest.raises(ValueError, match=r"weight="):
        evaluate(nn.Linear(3, 3), x, t, loss_fn=nn.NLLLoss(weight=torch.ones(3)))


def test_ignored_targets_are_refused_but_an_unused_ignore_index_is_fine() -> None:
    x, t = _classes()
    ce = nn.CrossEntropyLoss(ignore_index=2)
    with pytest.raises(ValueError, match=r"ignore_index=2.*batch size"):
        train_loop(nn.Linear(3, 3), x, t, epochs=1, lr=0.01, loss_fn=ce, batch_size=4)
    with pytest.raises(ValueError, match=r"ignore_index=2"):
        evaluate(nn.Linear(3, 3), x, t, loss_fn=ce)
    loader = DataLoader(TensorDataset(x, t), batch_size=4)
    with pytest.raises(ValueError, match=r"ignore_index=2"):
        train_loop(nn.Linear(3, 3), loader, epochs=1, lr=0.01, loss_fn=ce)
    kept = t != 2
    h = train_loop(nn.Linear(3, 3), x[kept], t[kept], epochs=1, lr=0.01, loss_fn=ce)
    assert len(h.losses) == 1
    # the exact alternative the message suggests: a sum over the batch's rows / its rows
    exact = train_loop(nn.Linear(3, 3), x, t, epochs=1, lr=0.01, batch_size=4,
                       loss_fn=lambda o, y: nn.functional.cross_entropy(
                           o, y, ignore_index=2, reduction="sum") / len(y))  # fmt: skip
    assert len(exact.losses) == 1


# weak spots: loader batches and class targets checked up front


@pytest.mark.parametrize(
    ("batch", "error", "match"),
    [
        ((torch.ones(4, 3, dtype=torch.long), torch.ones(4, 1)), TypeError,
         r"inputs' first batch: inputs must be a floating"),
        ((torch.full((4, 3), float("nan")), torch.ones(4, 1)), ValueError,
         r"inputs' first batch: inputs must be finite"),
        ((torch.ones(4, 3, dtype=torch.float64), torch.ones(4, 1)), TypeError, r"model's dtype"),
        ((torch.ones(4, 5), torch.ones(4, 1)), ValueError, r"inputs must fit the model"),
    ],
    ids=["int", "nan", "float64", "shape"],
)  # fmt: skip
def test_a_loaders_first_batch_is_checked_like_tensors_before_anything_changes(
    batch: tuple[Tensor, Tensor], error: type[Exception], match: str
) -> None:
    model = _mlp()
    before, rng = params_of(model), torch.get_rng_state()
    with pytest.raises(error, match=match):
        train_loop(model, [batch, batch], epochs=2, lr=0.01)
    assert_same_bits(params_of(model), before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_peeking_at_a_shuffled_loader_draws_nothing_from_its_generator() -> None:
    x, y = _data(16)

    def run() -> TrainHistory:
        gen = torch.Generator().manual_seed(7)
        loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, generator=gen)
        return train_loop(_mlp(), loader, epochs=3, lr=0.01, generator=gen)

    gen = torch.Generator().manual_seed(7)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, generator=gen)
    model = _mlp()
    opt_losses = []
    for _ in range(3):  # the loop by hand
        values = []
        for xb, yb in loader:
            loss = nn.functional.mse_loss(model(xb), yb)
            values.append((loss.item(), len(xb)))
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    assert p.grad is not None
                    p.sub_(0.01 * p.grad)
                    p.grad = None
        opt_losses.append(sum(v * n for v, n in values) / 16)
    assert run().losses == pytest.approx(opt_losses, rel=1e-6)


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        (torch.zeros(12, dtype=torch.int32), TypeError, r"targets must be int64 class indices"),
        (torch.zeros(12, dtype=torch.bool), TypeError, r"targets must be int64 class indices"),
        (torch.zeros(12, 1, dtype=torch.long), ValueError,
         r"targets .* rows of shape \(1,\).*squeeze"),
        (torch.zeros(12), ValueError, r"targets .*class probabilities.*\(3,\)"),
    ],
    ids=["int32", "bool", "n-by-1", "float-1d"],
)  # fmt: skip
def test_bad_cross_entropy_targets_are_refused_up_front(
    targets: Tensor, error: type[Exception], match: str
) -> None:
    x, _ = _classes()
    model, gen = nn.Linear(3, 3), torch.Generator().manual_seed(0)
    before, state = params_of(model), gen.get_state()
    with pytest.raises(error, match=match):
        train_loop(model, x, targets, epochs=2, lr=0.01, batch_size=4, generator=gen,
                   loss_fn=nn.CrossEntropyLoss())  # fmt: skip
    assert_same_bits(params_of(model), before)
    assert torch.equal(gen.get_state(), state)


# weak spots: schedules


@pytest.mark.parametrize(("interval", "needed", "short"), [("batch", 9, 8), ("epoch", 3, 2)])
def test_a_one_cycle_schedule_too_short_for_the_run_is_refused_up_front(
    interval: str, needed: int, short: int
) -> None:
    x, y = _data(10)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = params_of(model)
    s = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=short)
    with pytest.raises(ValueError, match=rf"total_steps={short}.*{needed}"):
        train_loop(model, x, y, epochs=3, batch_size=4, optimizer=opt, scheduler=s,
                   scheduler_interval=interval)  # fmt: skip
    assert_same_bits(params_of(model), before)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    s = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=needed)
    h = train_loop(model, x, y, epochs=3, batch_size=4, optimizer=opt, scheduler=s,
                   scheduler_interval=interval)  # fmt: skip
    assert len(h.losses) == 3


def test_a_one_cycle_schedule_counts_accumulated_updates() -> None:
    x, y = _data(10)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    s = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=5)  # 3 epochs of 2 updates
    with pytest.raises(ValueError, match=r"total_steps=5.*6"):
        train_loop(model, x, y, epochs=3, batch_size=2, accumulate=3, optimizer=opt,
                   scheduler=s, scheduler_interval="batch")  # fmt: skip


def test_a_batch_interval_without_a_scheduler_is_refused() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match=r"scheduler_interval='batch' needs a scheduler"):
        train_loop(_mlp(), x, y, epochs=1, lr=0.01, scheduler_interval="batch")


# weak spots: the dead-units warning


class _Gate(nn.Module):
    """Multiplies by a mask a callback sets each epoch: 0 kills a unit, 1 keeps it."""

    def __init__(self, units: int) -> None:
        super().__init__()
        self.mask = torch.ones(units)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask


class _Masks(Callback):
    order = 5

    def __init__(self, gate: _Gate, masks: dict[int, list[float]]) -> None:
        self.gate, self.masks = gate, masks

    def on_epoch_begin(self, epoch: int) -> None:
        if epoch in self.masks:
            self.gate.mask = torch.tensor(self.masks[epoch])


def _gated(masks: dict[int, list[float]], epochs: int) -> TrainHistory:
    torch.manual_seed(0)
    gate = _Gate(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Softplus(), gate, nn.Linear(4, 1))
    x, y = _data()
    return train_loop(model, x, y, epochs=epochs, lr=0.01, record=["2"], probe=x[:5],
                      callbacks=[_Masks(gate, masks)])  # fmt: skip


def test_units_dead_for_a_while_that_revive_are_not_reported_dead() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeadUnitsWarning)
        h = _gated({0: [0.0, 1.0, 1.0, 1.0], 4: [1.0] * 4}, epochs=8)
    assert h.dead_units == {"2": []}


def test_the_warning_names_every_unit_dead_at_the_end() -> None:
    with pytest.warns(DeadUnitsWarning) as caught:
        # unit 3 is 0 in the last epoch only: not dead
        h = _gated({0: [0.0, 1.0, 1.0, 1.0], 4: [0.0, 0.0, 0.0, 1.0], 7: [0.0] * 4}, epochs=8)
    dead = [w for w in caught if issubclass(w.category, DeadUnitsWarning)]
    assert len(dead) == 1
    text = str(dead[0].message)
    assert "3 of the 4 unit(s)" in text and "units [0, 1, 2]" in text
    assert "dead at the end" in text and "epochs 6 to 8" in text
    assert dead[0].filename == __file__
    assert h.dead_units == {"2": [0, 1, 2]}


def test_dead_units_are_found_in_layers_of_different_row_counts() -> None:
    class Wide(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return (x + 1).unsqueeze(1).expand(-1, 2, -1) * torch.tensor([0.0, 1.0, 1.0])

    torch.manual_seed(0)
    first = nn.Linear(3, 3)
    model = nn.Sequential(first, nn.ReLU(), Wide(), nn.Flatten(), nn.Linear(6, 1))
    with torch.no_grad():
        first.bias.fill_(-50.0)  # every unit of "1" is 0; only unit 0 of "2" is
    x, y = _data()
    with pytest.warns(DeadUnitsWarning) as caught:
        h = train_loop(model, x, y, epochs=4, lr=0.01, record=["1", "2"], probe=x[:5])
    assert h.dead_units == {"1": [0, 1, 2], "2": [0]}
    assert len([w for w in caught if issubclass(w.category, DeadUnitsWarning)]) == 2


# promises: no memory pile, refusals before anything changes


class _Count(Callback):
    reads_history = False  # it empties no pile: the loop does not publish for it

    def __init__(self, at: tuple[int, ...]) -> None:
        self.at, self.seen = at, dict[int, int]()

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        if epoch in self.at:
            gc.collect()
            with warnings.catch_warnings():  # isinstance on a deprecated torch alias warns
                warnings.simplefilter("ignore")
                self.seen[epoch] = sum(1 for o in gc.get_objects() if isinstance(o, Tensor))


def test_record_keeps_live_tensors_flat_over_a_long_run() -> None:
    x, y = _data(4)
    count = _Count((199, 999))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))  # no unit ever dead
    train_loop(model, x, y, epochs=1000, lr=0.01, record=True, callbacks=[count])
    assert count.seen[199] == count.seen[999]


def _bad_loss(out: Tensor, t: Tensor) -> Tensor:
    return (out - t) ** 2  # per row: not a batch mean


def test_a_bad_loss_fn_on_resume_is_refused_before_the_checkpoint_is_restored(
    tmp_path: Path,
) -> None:
    x, y = _data()
    path = tmp_path / "c.pt"
    m = _mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    train_loop(m, x, y, epochs=2, batch_size=4, optimizer=opt, checkpoint=path,
               generator=torch.Generator().manual_seed(1))  # fmt: skip
    model = _mlp(seed=9, dropout=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(5)
    before, opt_state, gen_state = params_of(model), opt.state_dict(), gen.get_state()
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match="loss_fn must return a 0-d"):
        train_loop(model, x, y, epochs=4, batch_size=4, optimizer=opt, checkpoint=path,
                   resume=True, generator=gen, loss_fn=_bad_loss)  # fmt: skip
    assert_same_bits(params_of(model), before)
    assert opt.state_dict() == opt_state
    assert torch.equal(gen.get_state(), gen_state)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_bad_loss_fn_is_refused_before_the_generator_or_global_rng_moves() -> None:
    x, y = _data()
    model, gen = _mlp(dropout=0.5), torch.Generator().manual_seed(5)
    before, state, rng = params_of(model), gen.get_state(), torch.get_rng_state()
    model.eval()
    with pytest.raises(ValueError, match="loss_fn must return a 0-d"):
        train_loop(model, x, y, epochs=2, batch_size=4, lr=0.01, generator=gen,
                   loss_fn=_bad_loss)  # fmt: skip
    assert_same_bits(params_of(model), before)
    assert torch.equal(gen.get_state(), state)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training and not model[2].training  # every mode restored


def test_the_loss_check_leaves_batch_norm_statistics_alone() -> None:
    x, y = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    before = params_of(model)
    with pytest.raises(ValueError, match="loss_fn must return a 0-d"):
        train_loop(model, x, y, epochs=2, lr=0.01, batch_size=4, loss_fn=_bad_loss)
    assert_same_bits(params_of(model), before)  # running mean, var and count included


# what the mutants of tools/mutants_loop.py showed untested


def test_val_class_targets_are_checked_before_training() -> None:
    x, t = _classes()
    with pytest.raises(TypeError, match=r"val targets must be int64 class indices"):
        train_loop(nn.Linear(3, 3), x, t, epochs=1, lr=0.01, loss_fn=nn.CrossEntropyLoss(),
                   val=(x, t.int()))  # fmt: skip
    with pytest.raises(TypeError, match=r"val's first batch: inputs must be a floating"):
        train_loop(_mlp(), *_data(), epochs=1, lr=0.01, val=[(x.long(), x[:, :1])])


def _scripted(values: list[float], mode: str, min_delta: float) -> TrainHistory:
    scores = iter([0.0, *values])  # the first call is validation's check on a few rows
    x, y = _data()
    return train_loop(
        _mlp(), x, y, epochs=len(values), lr=0.01, val=(x, y),
        metrics={"m": lambda o, t: torch.tensor(next(scores))},
        callbacks=[EarlyStopping("m", patience=1, min_delta=min_delta, mode=mode)],
    )  # fmt: skip


@pytest.mark.parametrize(("mode", "values"), [("min", [1.0, 0.5, 0.0]), ("max", [1.0, 1.5, 2.0])])
def test_early_stopping_needs_more_than_min_delta_in_either_mode(
    mode: str, values: list[float]
) -> None:
    h = _scripted(values, mode, 0.5)  # exactly min_delta better: no improvement
    assert h.stopped_epoch == 1 and h.best_epoch == 0
    h = _scripted(values, mode, 0.25)  # more than min_delta better: improvements
    assert h.stopped_epoch is None and h.best_epoch == 2


def test_max_mode_keeps_the_highest_value() -> None:
    h = _scripted([1.0, 3.0, 2.0, 2.5], "max", 0.0)
    assert h.best_epoch == 1 and h.stopped_epoch == 2


def test_a_failing_run_keeps_its_error_over_the_dead_units_warning() -> None:
    def boom(epoch: int, history: TrainHistory) -> None:
        if epoch == 3:
            raise RuntimeError("boom")

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeadUnitsWarning)
        with pytest.raises(RuntimeError, match="boom"):
            _gated_with({0: [0.0, 0.0, 1.0, 1.0]}, epochs=5, extra=[boom])


def _gated_with(masks: dict[int, list[float]], epochs: int, extra: list[Any]) -> TrainHistory:
    torch.manual_seed(0)
    gate = _Gate(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Softplus(), gate, nn.Linear(4, 1))
    x, y = _data()
    return train_loop(model, x, y, epochs=epochs, lr=0.01, record=["2"], probe=x[:5],
                      callbacks=[_Masks(gate, masks), *extra])  # fmt: skip


class _Modes(Callback):
    def __init__(self, model: nn.Module) -> None:
        self.model, self.seen = model, list[bool]()

    def on_epoch_begin(self, epoch: int) -> None:
        self.seen.append(all(m.training for m in self.model.modules()))


def test_the_probe_pass_puts_train_mode_back_for_the_next_epoch() -> None:
    model = _mlp(dropout=0.5)
    model.eval()
    modes = _Modes(model)
    x, y = _data()
    train_loop(model, x, y, epochs=3, lr=0.01, record=["1"], probe=x[:4], callbacks=[modes])
    assert modes.seen == [True, True, True]
    assert not any(m.training for m in model.modules())


def test_peeking_at_a_loader_shuffled_by_the_global_rng_puts_it_back() -> None:
    x, y = _data(16)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    torch.manual_seed(11)
    orders = [torch.cat([xb for xb, _ in loader]) for _ in range(2)]
    model = _mlp()  # it seeds the global RNG: before the run's seed
    torch.manual_seed(11)
    seen: list[Tensor] = []

    class Spy(Callback):
        def on_before_update(self, step: Any) -> None:
            seen.append(step.inputs)

    train_loop(model, loader, epochs=2, lr=0.01, callbacks=[Spy()])
    assert torch.equal(torch.cat(seen), torch.cat(orders))


def test_class_indices_outside_the_outputs_classes_are_refused_before_anything_changes() -> None:
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    classes = torch.arange(40) % 4
    classes[30] = 9  # a later batch holds a class the 4 outputs do not have
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    gen = torch.Generator().manual_seed(1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state, rng = gen.get_state(), torch.get_rng_state()
    with pytest.raises(ValueError, match=r"class indices from 0 to 3 .* from 0 to 9"):
        train_loop(net, x, classes, epochs=2, lr=0.1, batch_size=8, generator=gen,
                   loss_fn=torch.nn.CrossEntropyLoss())  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(gen.get_state(), state) and torch.equal(torch.get_rng_state(), rng)
