"""Learning-rate regimes of the chain: 0.01 diverges, 1e-3 kills the ReLU, 1e-4 converges
======================================================================================

Run: ``python examples/06_learning_rates.py [--device cpu|cuda]``
"""

import torch
from _common import parse_args

from gradbasics import ChainModel, DivergenceError, train_loop

args = parse_args(__doc__)
x = torch.tensor([2.0], device=args.device)
t = torch.tensor([1.0], device=args.device)
for lr in (1e-2, 1e-3, 1e-4):
    model = ChainModel(device=args.device)
    try:
        history = train_loop(model, x, t, epochs=100, lr=lr)
    except DivergenceError as err:
        seen = err.history.losses
        print(f"lr={lr:g}: DivergenceError in epoch {err.epoch + 1} of 100, losses {seen}")
        continue
    pre = (model.w2 * model.w1 * x).item()
    state = "dead ReLU" if pre <= 0 else "converged"
    print(f"lr={lr:g}: {state}, final loss {history.losses[-1]:.3g} (w2*w1*x = {pre:.3g})")
