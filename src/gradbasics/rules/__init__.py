"""Reference update rules beyond plain SGD, each bit-identical to its ``torch.optim`` twin.

Each rule comes twice: a functional step over explicit state (``adam_step(params, state,
lr=..., ...)`` with ``state = init_adam(params)``), and a small rule object that carries
the hyperparameters and owns the state (``rules.Adam(betas=...)``), usable as
``train_loop(..., lr=1e-3, update=rules.Adam())``. Argument names and defaults are those
of ``torch.optim``; the learning rate is always given separately. States are named tuples
of plain tensors, so they checkpoint with ``torch.save`` and load with
``weights_only=True``. :func:`as_optimizer` wraps a rule object as a
``torch.optim.Optimizer``, so torch's schedulers and any training loop drive it.
"""

from gradbasics.rules._common import Rule
from gradbasics.rules.adagrad import Adagrad, AdagradState, adagrad_step, init_adagrad
from gradbasics.rules.adam import Adam, AdamState, AdamW, adam_step, init_adam
from gradbasics.rules.optimizer import RuleOptimizer, as_optimizer
from gradbasics.rules.rmsprop import RMSprop, RMSpropState, init_rmsprop, rmsprop_step
from gradbasics.rules.sgd import SGD, SGDState, init_sgd, sgd_step

__all__ = [
    "SGD",
    "Adagrad",
    "AdagradState",
    "Adam",
    "AdamState",
    "AdamW",
    "RMSprop",
    "RMSpropState",
    "Rule",
    "RuleOptimizer",
    "SGDState",
    "adagrad_step",
    "adam_step",
    "as_optimizer",
    "init_adagrad",
    "init_adam",
    "init_rmsprop",
    "init_sgd",
    "rmsprop_step",
    "sgd_step",
]
