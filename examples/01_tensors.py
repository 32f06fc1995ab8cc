"""Tensors and devices: ``.to(device)``, ``@`` versus ``*``
========================================================

Run: ``python examples/01_tensors.py [--device cpu|cuda]``
"""

import torch
from _common import parse_args

args = parse_args(__doc__)
x = torch.tensor([1.0, 2.0]).to(args.device)  # (2,)
w = torch.tensor([[2.0, 0.0], [2.0, 0.0]], device=args.device)  # (2, 2)
print(f"x on {x.device}, w on {w.device}")
print(f"w @ x (matrix product)    = {(w @ x).tolist()}")
print(f"w * x (elementwise, broadcast) = {(w * x).tolist()}")
