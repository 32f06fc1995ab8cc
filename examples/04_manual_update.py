"""Updating weights by hand: torch.no_grad() (manual_sgd_step) versus the legacy .data
===================================================================================

Run: ``python examples/04_manual_update.py [--device cpu|cuda]``
"""

import torch
from _common import parse_args

from gradbasics import legacy_data_step, manual_sgd_step

args = parse_args(__doc__)
dev = args.device

w = torch.tensor([3.0], device=dev, requires_grad=True)
(w * w).sum().backward()
try:
    w -= 0.1 * w.grad  # type: ignore[operator]
except RuntimeError as err:
    print(f"in-place update of a leaf without no_grad: RuntimeError: {err}")
manual_sgd_step([w], lr=0.1)
print(f"manual_sgd_step: w = 3 - 0.1 * 6 = {w.item():g}")

# The hazard of .data: a write between forward and backward silently changes the gradient.
w = torch.tensor([3.0], device=dev, requires_grad=True)
w.grad = torch.ones(1, device=dev)  # left over from an earlier step
loss = (w**2).sum()  # dL/dw = 2 w = 6 at w = 3; the graph saves w
legacy_data_step([w], lr=1.0)  # w becomes 2, unseen by autograd
w.grad = None
loss.backward()
print(f".data write before backward: dL/dw = {w.grad.item():g} (silently wrong, should be 6)")

w = torch.tensor([3.0], device=dev, requires_grad=True)
w.grad = torch.ones(1, device=dev)
loss = (w**2).sum()
manual_sgd_step([w], lr=1.0)
try:
    loss.backward()
except RuntimeError:
    print("no_grad write before backward: RuntimeError raised (the stale graph is refused)")
