"""The notes' "dynamic learning rate" done right: AdaGrad, RMSprop and Adam on the chain
=====================================================================================

At the notes' learning rate 0.01, plain SGD diverges on the chain. ``lr = grad ** 2``
would make it worse (a step of grad ** 3). AdaGrad divides the step by the root of the
summed squared gradients instead, so its first step moves every weight by exactly lr.

Run: ``python examples/11_adaptive_rules.py [--device cpu|cuda]``
"""

import torch
from _common import parse_args

from gradbasics import ChainModel, DivergenceError, rules, train_loop

args = parse_args(__doc__)
x = torch.tensor([2.0], device=args.device)
t = torch.tensor([1.0], device=args.device)

first = ChainModel(device=args.device)
train_loop(first, x, t, epochs=1, lr=0.01, update=rules.Adagrad())
print(f"AdaGrad's first step: w1 = {first.w1.item():.4f} (3 - lr: the gradient's size cancels)")

try:
    train_loop(ChainModel(device=args.device), x, t, epochs=300, lr=0.01)
except DivergenceError as err:
    print(f"SGD:     DivergenceError in epoch {err.epoch + 1} of 300, losses {err.history.losses}")
for rule in (rules.Adagrad(), rules.RMSprop(), rules.Adam()):
    history = train_loop(ChainModel(device=args.device), x, t, epochs=300, lr=0.01, update=rule)
    print(f"{type(rule).__name__ + ':':8} loss {history.losses[0]:g} -> {history.losses[-1]:.4g}")
