"""Classify handwritten digits: a range test, accuracy, early stopping, a confusion matrix
=========================================================================================

Run: ``python examples/14_classify_digits.py [--device cpu|cuda] [--out lr-find.png]``

scikit-learn's bundled digits (1,797 images of 8 x 8 pixels, no download; ``pip install
scikit-learn``) and an MLP with ``nn.CrossEntropyLoss`` on integer labels. ``lr_find``
chooses the learning rate, ``EarlyStopping`` keeps the epoch of best validation
accuracy, and ``predict`` gives the confusion matrix of the validation rows.
"""

import math
import warnings

import torch
from _common import parse_args
from torch import nn

from gradbasics import EarlyStopping, lr_find, plot_lr_find, predict, train_loop

try:
    from sklearn.datasets import load_digits
except ImportError as exc:
    raise SystemExit("this example needs scikit-learn: pip install scikit-learn") from exc

args = parse_args(__doc__, out="lr-find.png")
digits = load_digits()
x = torch.tensor(digits.data, dtype=torch.float32) / 16  # (1797, 64) pixels in [0, 1]
y = torch.tensor(digits.target)  # (1797,) int64 labels 0..9
order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
x_train, y_train = x[order[:1437]], y[order[:1437]]
x_val, y_val = x[order[1437:]].to(args.device), y[order[1437:]].to(args.device)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).to(args.device)
loss_fn = nn.CrossEntropyLoss()
print(
    f"loss before training {loss_fn(model(x_val), y_val).item():.3f} (ln 10 = {math.log(10):.3f})"
)

found = lr_find(model, x_train, y_train, batch_size=64, loss_fn=loss_fn, start_lr=1e-4,
                end_lr=10.0, generator=torch.Generator().manual_seed(1))  # fmt: skip
assert found.suggestion is not None  # the loss falls on this data
print(f"range test: {len(found.lrs)} steps, suggestion lr = {found.suggestion:.3g}")


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The share of rows whose highest logit is the right class."""
    return (outputs.argmax(dim=1) == targets).float().mean()


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    history = train_loop(
        model, x_train, y_train, epochs=100, lr=found.suggestion, batch_size=64,
        loss_fn=loss_fn, generator=torch.Generator().manual_seed(2),
        val=(x_val, y_val), metrics={"accuracy": accuracy},
        early_stopping=EarlyStopping(monitor="accuracy", mode="max", patience=5),
    )  # fmt: skip
for w in caught:
    print(f"{w.category.__name__}: {w.message}")
best = history.best_epoch
assert best is not None and history.stopped_epoch is not None
print(f"stopped after epoch {history.stopped_epoch + 1}; best epoch {best + 1}, "
      f"validation accuracy {history.metrics['accuracy'][best]:.3f}")  # fmt: skip

predicted = predict(model, x_val).argmax(dim=1)  # (360,) labels
confusion = torch.bincount(10 * y_val + predicted, minlength=100).reshape(10, 10).cpu()
print("confusion matrix (rows: true digit, columns: predicted digit):")
print(confusion)
share = confusion.trace().item() / len(y_val)
same = abs(share - history.metrics["accuracy"][best]) < 1e-6  # float32 mean against a ratio
print(f"diagonal: accuracy {share:.3f}, the same as the best epoch's: {same}")
plot_lr_find(found, title="Digits: learning-rate range test").savefig(args.out, dpi=120)
print(f"figure written to {args.out}")
