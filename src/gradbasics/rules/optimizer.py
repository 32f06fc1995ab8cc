"""A rule of :mod:`gradbasics.rules` as a ``torch.optim.Optimizer``, for torch's schedulers."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch

from gradbasics._validate import _describe, check_lr
from gradbasics.rules._common import Rule

__all__ = ["RuleOptimizer", "as_optimizer"]


class RuleOptimizer(torch.optim.Optimizer):
    r"""A ``torch.optim.Optimizer`` whose ``step()`` applies a gradbasics rule.

    Each parameter group gets its own rule, built with the group's hyperparameters and
    ``foreach`` (the rule's own are the defaults: ``{"params": biases, "weight_decay":
    0.0}`` works as in torch), so each keeps its own state; ``step()`` calls it on the
    group's parameters at the group's ``lr`` and hyperparameters (a scheduler may move
    ``betas`` or ``momentum``, as ``OneCycleLR`` does):

    .. math::

        \theta_g \leftarrow \mathrm{rule}_g(\theta_g, \nabla_{\theta_g} L;\ \eta_g)

    for every group :math:`g`. torch's schedulers change ``param_groups[g]["lr"]`` as
    they do for any optimizer. :meth:`state_dict` holds the groups and each rule's state;
    :meth:`load_state_dict` checks and restores them. Build it with :func:`as_optimizer`.
    """

    def __init__(self, rule: Rule, params: Iterable[Any], *, lr: float) -> None:
        if not isinstance(rule, Rule):
            raise TypeError(f"rule must be a gradbasics.rules.Rule, got {_describe(rule)}.")
        if rule.state is not None:
            raise ValueError(
                f"rule must be fresh (no step taken), got {rule!r} with a state: its state "
                "belongs to the parameters it stepped."
            )
        self.rule = rule
        super().__init__(params, {"lr": check_lr(lr), **rule.hyper, "foreach": rule.foreach})
        self.rules = [self._rule_for(g) for g in self.param_groups]

    def _rule_for(self, group: dict[str, Any]) -> Rule:
        """A fresh rule with the group's hyperparameters (checked by the rule itself)."""
        hyper = {k: group[k] for k in self.rule.hyper}
        try:
            for k in type(self.rule).shared_by_groups:
                if hyper[k] != self.rule.hyper[k]:
                    raise ValueError(
                        f"{k} cannot differ between groups (torch.optim."
                        f"{type(self.rule).__name__} silently uses the default's for every "
                        f"group), got {hyper[k]!r} where the default is {self.rule.hyper[k]!r}."
                    )
            made = type(self.rule)(**hyper, foreach=group.get("foreach", self.rule.foreach))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"param group: {exc}") from None
        return made

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (and, once built, a fresh rule with its hyperparameters)."""
        super().add_param_group(param_group)
        if hasattr(self, "rules"):
            self.rules.append(self._rule_for(self.param_groups[-1]))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Apply each group's rule at its ``lr``; return the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, rule in zip(self.param_groups, self.rules, strict=True):
            if any(p.grad is not None for p in group["params"]):
                # a scheduler may move betas or momentum: the rule reads them per step
                rule.hyper = {k: group[k] for k in rule.hyper}
                rule.foreach = group.get("foreach", self.rule.foreach)  # as torch: per step
                rule(group["params"], group["lr"])
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The groups (torch's, with an empty per-parameter state) and each group's rule state."""
        state = super().state_dict()
        state["rules"] = [rule.state_dict() for rule in self.rules]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the groups and every rule's state (all checked before any change)."""
        saved = state_dict.get("rules")
        if not isinstance(saved, list) or len(saved) != len(self.rules):
            raise ValueError(
                f"state_dict must hold {len(self.rules)} rule states (one per group), got "
                f"{_describe(saved)}."
            )
        for rule, group, state in zip(self.rules, self.param_groups, saved, strict=True):
            probe = copy.copy(rule)  # the saved hyperparameters (a scheduler moves some)
            if isinstance(state, dict) and isinstance(state.get("hyper"), dict):
                probe.hyper = dict(state["hyper"])
            probe.check_state_dict(state, group["params"])
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "rules"})
        for rule, state in zip(self.rules, saved, strict=True):
            rule.hyper = dict(state["hyper"])
        for rule, group, state in zip(self.rules, self.param_groups, saved, strict=True):
            rule.load_state_dict(state, group["params"])


def as_optimizer(rule: Rule, params: Iterable[Any], *, lr: float) -> RuleOptimizer:
    """Return a ``torch.optim.Optimizer`` over ``params`` whose ``step()`` is ``rule``.

    torch's schedulers, parameter groups (a list of dicts, each with its own ``lr``) and
    any training loop then drive a reference rule: ``as_optimizer(rules.Adam(), ...)``
    under ``StepLR`` equals ``torch.optim.Adam`` under ``StepLR`` bit for bit.

    Args:
        rule: A fresh rule object, e.g. ``rules.Adam(betas=(0.9, 0.99))``; each group
            gets its own copy.
        params: The parameters, or a list of group dicts (``{"params": ..., "lr": ...}``).
        lr: The default learning rate of the groups, >= 0.

    Returns:
        The optimizer.

    Raises:
        TypeError: If ``rule`` is not a rule object, or ``lr`` not a number.
        ValueError: If ``rule`` already took a step, or ``lr`` is negative.

    Example:
        >>> import torch
        >>> from gradbasics import rules
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = rules.as_optimizer(rules.Adam(), [w], lr=0.1)
        >>> twin = torch.nn.Parameter(w.detach().clone())
        >>> ref = torch.optim.Adam([twin], lr=0.1)
        >>> for p, o in ((w, opt), (twin, ref)):
        ...     (p ** 2).sum().backward()
        ...     o.step()
        >>> torch.equal(w, twin)
        True
    """
    return RuleOptimizer(rule, params, lr=lr)
