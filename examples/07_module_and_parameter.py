"""nn.Module and nn.Parameter: plain tensor attributes are invisible to parameters()
=================================================================================

Run: ``python examples/07_module_and_parameter.py [--device cpu|cuda]``
"""

import torch
from _common import parse_args

from gradbasics import ChainModel


class NotesModel(torch.nn.Module):
    """The notes' first model class: weights as plain tensors, not parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = torch.tensor([3.0], requires_grad=True)


args = parse_args(__doc__)
print(f"plain tensors: parameters() = {list(NotesModel().parameters())}")
model = ChainModel(device=args.device)
names = [name for name, _ in model.named_parameters()]
print(f"nn.Parameter: parameters() = {names}, on {model.w1.device}")
print(f"model(x) at x=2: {model(torch.tensor([2.0], device=args.device)).item():g}")
