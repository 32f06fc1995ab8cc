"""Training only w2 (the notes' task 2) and its activation chart, one line per epoch
=================================================================================

Run: ``python examples/08_train_only_w2.py [--device cpu|cuda] [--out task2.png]``
"""

import torch
from _common import parse_args

from gradbasics import FrozenFirstModel, plot_activations, train_loop

args = parse_args(__doc__, out="task2-activations.png")
model = FrozenFirstModel(w1=1.0, w2=1.0, device=args.device)
one = torch.tensor([1.0], device=args.device)
history = train_loop(model, one, 2 * one, epochs=20, lr=0.01, record=True)
for epoch in (0, 4, 9, 14, 19):
    out = history.activations["output"][epoch].item()
    print(f"epoch {epoch + 1:2d}: loss {history.losses[epoch]:.4f}, output {out:.4f}")
print(f"w1 = {model.w1.item():g} (buffer), w2 = {model.w2.item():.6f}")
print(f"closed form 2 - 0.98**20 = {2 - 0.98**20:.6f}")
fig = plot_activations(history, title="Task 2: only w2 trains (w1 fixed at 1.0)")
fig.savefig(args.out, dpi=120)
print(f"figure written to {args.out}")
