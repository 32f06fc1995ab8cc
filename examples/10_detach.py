""".detach(): the same values, cut from the graph
==============================================

Run: ``python examples/10_detach.py [--device cpu|cuda]``
"""

import torch
from _common import parse_args

args = parse_args(__doc__)
w = torch.tensor([3.0], device=args.device, requires_grad=True)
y = w * 2.0
print(f"y.requires_grad = {y.requires_grad}, y.detach().requires_grad = {y.detach().requires_grad}")
z = y.detach() * w  # y is a constant 6 here
z.backward()
assert w.grad is not None
print(f"d(y.detach() * w)/dw = {w.grad.item():g} (y treated as the constant 6)")
w.grad = None
(y * w).backward()
assert w.grad is not None
print(f"d(y * w)/dw = d(2 w^2)/dw = {w.grad.item():g}")
