"""Autograd on y = x ** w: dy/dw = x ** w * ln(x), 5.545 at x=2, w=3
=================================================================

Run: ``python examples/02_autograd_power.py [--device cpu|cuda]``
"""

import math

import torch
from _common import parse_args

args = parse_args(__doc__)
x = torch.tensor([2.0], device=args.device)
w = torch.tensor([3.0], device=args.device, requires_grad=True)
y = x**w
y.backward()
assert w.grad is not None
print(f"y = x ** w = {y.item():g}")
print(f"dy/dw by autograd  = {w.grad.item():.4f}")
print(f"dy/dw = x^w ln x   = {2**3 * math.log(2):.4f}")
