"""The chain x -> w1*x -> relu(w2*.) -> w3*. and its gradients, by hand and by autograd
====================================================================================

Run: ``python examples/03_chain_gradients.py [--device cpu|cuda]``
"""

import torch
from _common import parse_args

from gradbasics import ChainModel

args = parse_args(__doc__)
model = ChainModel(w1=3.0, w2=4.0, w3=5.0, device=args.device)
x, t = 2.0, 1.0
loss = ((model(torch.tensor([x], device=args.device)) - t) ** 2).sum()
loss.backward()
y = 5.0 * 4.0 * 3.0 * x  # the ReLU is active: y = w3 w2 w1 x = 120
by_hand = {
    "w1": 2 * (y - t) * 5 * 4 * x,
    "w2": 2 * (y - t) * 5 * 3 * x,
    "w3": 2 * (y - t) * 4 * 3 * x,
}
print(f"loss = {loss.item():g}")
for name, p in model.named_parameters():
    assert p.grad is not None
    print(f"dL/d{name}: autograd {p.grad.item():g}, by hand {by_hand[name]:g}")
