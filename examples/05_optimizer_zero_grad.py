"""torch.optim.SGD, zero_grad, and what goes wrong without it (gradients accumulate)
=================================================================================

Run: ``python examples/05_optimizer_zero_grad.py [--device cpu|cuda]``
"""

import torch
from _common import parse_args

from gradbasics import ChainModel, manual_sgd_step

args = parse_args(__doc__)
x = torch.tensor([2.0], device=args.device)

model = ChainModel(device=args.device)
for _ in range(2):
    ((model(x) - 1.0) ** 2).sum().backward()
assert model.w1.grad is not None
print(f"two backward passes without zero_grad: dL/dw1 = {model.w1.grad.item():g} (2 x 9520)")

a, b = ChainModel(device=args.device), ChainModel(device=args.device)
opt = torch.optim.SGD(a.parameters(), lr=1e-4)
for _ in range(10):
    ((a(x) - 1.0) ** 2).sum().backward()
    opt.step()
    opt.zero_grad()
    ((b(x) - 1.0) ** 2).sum().backward()
    manual_sgd_step(b.parameters(), lr=1e-4)
    b.zero_grad()
same = all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
print(f"10 steps of SGD + zero_grad equal manual_sgd_step bit for bit: {same}")
print(f"the notes' 'dynamic lr' p.grad ** 2 would move w1 by 9520 ** 3 = {9520.0**3:.3g}")
