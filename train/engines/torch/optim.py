"""MXNet 1.9.1's sgd, nag, adam and rmsprop updates, as the MXNet engine builds them, in torch.

torch's own optimizers compute other functions (checked against MXNet by
``tests/unit/test_torch_optim.py``):

- sgd/nag: MXNet keeps ``lr`` inside the momentum, so after a learning-rate step the old velocity
  keeps its old-``lr`` scale; torch multiplies the whole buffer by the new ``lr``.
- nag: ``nag_mom_update`` runs with ``out=weight``; its kernel writes the new weight before it
  reads the weight again for the momentum's decay term, so that term uses the updated weight.
- adam: the bias correction goes into ``lr`` and epsilon is added to ``sqrt(v)`` uncorrected.
- rmsprop (non-centred): epsilon is inside the square root.

Every update starts from ``g = rescale_grad * grad + wd * w``: ``rescale_grad`` is what
``Trainer.step(batch_size)`` sets (see :mod:`train.engines.torch.losses`), ``wd`` is
``weight_decay`` for sgd/nag and 0 for adam/rmsprop (``train.loop.make_optimizer`` passes it to
those two only), on every trainable parameter (Gluon's ``wd_mult`` is 1 everywhere in this
product, BatchNorm and biases included). Scalars are rounded to float32 as MXNet's kernels
receive them, so the results agree to float32 rounding. No gradient clipping (the product sets
none) and no ``multi_precision`` (float16 training keeps float32 weights, where MXNet's
``multi_precision`` does nothing).

Each parameter's update count ``t`` lives in the optimizer state, so it survives
``state_dict``/``load_state_dict`` as MXNet's counts survive ``Trainer.save_states``. A trainable
parameter without a gradient is updated as if its gradient were zero: MXNet updates a
``fix_gamma`` BatchNorm gamma that way (zero gradient, decay and momentum still apply).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

import numpy as np
import torch

OPTIMIZERS = ("sgd", "nag", "adam", "rmsprop")


class OptimizerConfig(Protocol):
    """The hyperparameters read here, named as in ``train.config.TrainConfig``."""

    optimizer: str
    learning_rate: float
    momentum: float
    weight_decay: float
    beta_1: float
    beta_2: float
    eps: float
    gamma: float


def _f32(value: float) -> float:
    """``value`` as MXNet's kernels see a float hyperparameter (``DType``, here float32)."""
    return float(np.float32(value))


def _one_minus(value: float) -> float:
    """``1 - value`` computed in float32, as the kernels compute ``1 - beta``."""
    return float(np.float32(1.0) - np.float32(value))


class MXNetOptimizer(torch.optim.Optimizer):
    """The part every MXNet optimizer shares: ``lr`` and ``rescale_grad`` per group, the update
    count ``t`` per parameter, and the rescaled, decayed gradient."""

    def __init__(self, params: Iterable[torch.nn.Parameter], **defaults: float):
        super().__init__(params, defaults)

    @property
    def learning_rate(self) -> float:
        return self.param_groups[0]["lr"]

    def set_learning_rate(self, lr: float) -> None:
        """As ``Trainer.set_learning_rate``: the next updates use ``lr``."""
        for group in self.param_groups:
            group["lr"] = lr

    @property
    def rescale_grad(self) -> float:
        return self.param_groups[0]["rescale_grad"]

    def set_rescale_grad(self, rescale_grad: float) -> None:
        """The factor every gradient is multiplied by (``Trainer.step`` sets ``1/batch_size``)."""
        for group in self.param_groups:
            group["rescale_grad"] = rescale_grad

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        """One update of every trainable parameter (``closure`` is not supported)."""
        if closure is not None:
            raise ValueError("MXNet-semantics optimizers take no closure")
        for group in self.param_groups:
            params = [p for p in group["params"] if p.requires_grad]
            if not params:
                continue
            states = [self.state[p] for p in params]
            for state in states:
                state["t"] = state.get("t", 0) + 1
            scale = _f32(group["rescale_grad"])
            grads = torch._foreach_mul(
                [torch.zeros_like(p) if p.grad is None else p.grad for p in params], scale
            )
            self._update(group, params, grads, states)

    @staticmethod
    def _decay(grads: list, params: list, wd: float) -> list:
        """``grads += wd * params`` (``grads``: fresh tensors of rescaled gradients)."""
        if wd:
            torch._foreach_add_(grads, params, alpha=_f32(wd))
        return grads

    @staticmethod
    def _buffers(states: list, params: list, *names: str) -> list[list[torch.Tensor]]:
        """Per name, each parameter's state tensor (zeros on the first update)."""
        for state, p in zip(states, params, strict=True):
            for name in names:
                if name not in state:
                    state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return [[state[name] for state in states] for name in names]

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        """Update ``params`` from their rescaled (not yet decayed) gradients ``grads``."""
        raise NotImplementedError


class SGD(MXNetOptimizer):
    """``mom = momentum*mom - lr*g; w += mom`` (``sgd_mom_update``); with momentum 0,
    ``w -= lr*g`` (``sgd_update``)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        learning_rate: float,
        rescale_grad: float,
        momentum: float = 0.0,
        wd: float = 0.0,
    ):
        super().__init__(
            params, lr=learning_rate, rescale_grad=rescale_grad, momentum=momentum, wd=wd
        )

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        lr, momentum = _f32(group["lr"]), _f32(group["momentum"])
        grads = self._decay(grads, params, group["wd"])
        if momentum <= 0:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        (moms,) = self._buffers(states, params, "mom")
        torch._foreach_mul_(moms, momentum)
        torch._foreach_add_(moms, grads, alpha=-lr)
        torch._foreach_add_(params, moms)


class NAG(SGD):
    """``nag_mom_update`` with ``out=weight``, in its kernel's order: ``mom *= momentum;
    w = w - mom + (1+momentum)*(mom - lr*g); mom -= lr*g'`` where ``g'`` is ``g`` with the
    decay term recomputed on the new ``w``. With momentum 0: plain ``sgd_update``."""

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        lr, momentum = _f32(group["lr"]), _f32(group["momentum"])
        if momentum <= 0:
            super()._update(group, params, grads, states)
            return
        (moms,) = self._buffers(states, params, "mom")
        torch._foreach_mul_(moms, momentum)
        decayed = torch._foreach_add(grads, params, alpha=_f32(group["wd"]))
        ahead = torch._foreach_add(moms, decayed, alpha=-lr)
        torch._foreach_sub_(params, moms)
        torch._foreach_add_(params, ahead, alpha=_f32(1.0 + momentum))
        torch._foreach_add_(moms, self._decay(grads, params, group["wd"]), alpha=-lr)


class Adam(MXNetOptimizer):
    """``m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
    w -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v) + eps)`` (``Adam.update`` + ``adam_update``)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        learning_rate: float,
        rescale_grad: float,
        beta1: float,
        beta2: float,
        epsilon: float,
        wd: float = 0.0,
    ):
        super().__init__(
            params,
            lr=learning_rate,
            rescale_grad=rescale_grad,
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            wd=wd,
        )

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        beta1, beta2 = group["beta1"], group["beta2"]
        grads = self._decay(grads, params, group["wd"])
        means, variances = self._buffers(states, params, "mean", "var")
        torch._foreach_mul_(means, _f32(beta1))
        torch._foreach_add_(means, grads, alpha=_one_minus(beta1))
        torch._foreach_mul_(variances, _f32(beta2))
        torch._foreach_addcmul_(variances, grads, grads, value=_one_minus(beta2))
        denominators = torch._foreach_sqrt(variances)
        torch._foreach_add_(denominators, _f32(group["epsilon"]))
        steps = [  # float64 in Python, as Adam.update computes it, then float32 in the kernel
            -_f32(group["lr"] * math.sqrt(1.0 - beta2 ** s["t"]) / (1.0 - beta1 ** s["t"]))
            for s in states
        ]
        torch._foreach_addcdiv_(params, means, denominators, steps)


class RMSProp(MXNetOptimizer):
    """``n = (1-gamma)*g^2 + gamma*n; w -= lr*g/sqrt(n + eps)`` (``rmsprop_update``,
    ``centered=False``)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        learning_rate: float,
        rescale_grad: float,
        gamma1: float,
        epsilon: float,
        wd: float = 0.0,
    ):
        super().__init__(
            params,
            lr=learning_rate,
            rescale_grad=rescale_grad,
            gamma1=gamma1,
            epsilon=epsilon,
            wd=wd,
        )

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        grads = self._decay(grads, params, group["wd"])
        (norms,) = self._buffers(states, params, "n")
        torch._foreach_mul_(norms, _f32(group["gamma1"]))
        torch._foreach_addcmul_(norms, grads, grads, value=_one_minus(group["gamma1"]))
        denominators = torch._foreach_add(norms, _f32(group["epsilon"]))
        torch._foreach_sqrt_(denominators)
        torch._foreach_addcdiv_(params, grads, denominators, value=-_f32(group["lr"]))


def make_optimizer(
    cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter], *, rescale_grad: float
) -> MXNetOptimizer:
    """The optimizer ``train.loop.make_optimizer`` builds for ``cfg``, over the parameters of
    ``params`` that require a gradient (Gluon's ``grad_req='null'`` ones are left out).

    Raises:
        ValueError: an unknown ``cfg.optimizer``, or no trainable parameter.
    """
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("no parameter requires a gradient: nothing for the optimizer to train")
    common = {"learning_rate": cfg.learning_rate, "rescale_grad": rescale_grad}
    if cfg.optimizer == "sgd":
        return SGD(trainable, momentum=cfg.momentum, wd=cfg.weight_decay, **common)
    if cfg.optimizer == "nag":
        return NAG(trainable, momentum=cfg.momentum, wd=cfg.weight_decay, **common)
    if cfg.optimizer == "adam":
        return Adam(trainable, beta1=cfg.beta_1, beta2=cfg.beta_2, epsilon=cfg.eps, **common)
    if cfg.optimizer == "rmsprop":
        return RMSProp(trainable, gamma1=cfg.gamma, epsilon=cfg.eps, **common)
    raise ValueError(f"optimizer {cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
