"""Random mini-batches: batched_loss and train_loop(batch_size=...) on y = 3x + 1
==============================================================================

Run: ``python examples/09_minibatches.py [--device cpu|cuda]``
"""

import torch
from _common import parse_args

from gradbasics import batched_loss, train_loop

args = parse_args(__doc__)
gen = torch.Generator().manual_seed(0)  # on the CPU: same batches on every device
inputs = torch.rand(256, 1, generator=gen)
targets = 3 * inputs + 1
torch.manual_seed(0)
model = torch.nn.Linear(1, 1).to(args.device)
data = inputs.to(args.device), targets.to(args.device)
print(f"loss on a random batch of 16 before training: {batched_loss(model, *data, 16).item():.4f}")
history = train_loop(model, *data, epochs=200, lr=0.1, batch_size=16, generator=gen)
print(f"epochs: {len(history.losses)}, 16 batches each; last epoch loss {history.losses[-1]:.2e}")
print(f"fitted: weight {model.weight.item():.3f}, bias {model.bias.item():.3f} (truth 3, 1)")
