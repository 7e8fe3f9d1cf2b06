"""The torch half of ``tests/unit/test_torch_optim.py``, run in ``.venv-torch``: replays the
gradients, losses and overflow patterns the MXNet half made, with the torch engine's code.

Usage: ``python -m tests.torch_optim_side IN.npz OUT.npz``.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from tests.torch_side import read_inputs
from train.config import TrainConfig
from train.engines.torch import losses, optim, precision

_BUILT_IN = {  # torch's own optimizers with the same hyperparameters: they must NOT match
    "sgd": lambda ps, c: torch.optim.SGD(
        ps, lr=c.learning_rate, momentum=c.momentum, weight_decay=c.weight_decay
    ),
    "nag": lambda ps, c: torch.optim.SGD(
        ps, lr=c.learning_rate, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=True
    ),
    "adam": lambda ps, c: torch.optim.Adam(
        ps, lr=c.learning_rate, betas=(c.beta_1, c.beta_2), eps=c.eps
    ),
    "rmsprop": lambda ps, c: torch.optim.RMSprop(ps, lr=c.learning_rate, alpha=c.gamma, eps=c.eps),
}


def _trajectory(
    make: Callable[[list], torch.optim.Optimizer],
    weights: list[np.ndarray],
    grads: list[np.ndarray],
    lrs: list[float],
    grad_factor: float = 1.0,
    resume_at: int | None = None,
) -> list[np.ndarray]:
    """Weights after one step per entry of ``lrs``; at ``resume_at`` the optimizer's state goes
    through ``state_dict`` -> bytes -> a fresh optimizer over fresh parameters (a resume)."""
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in weights]
    opt = make(params)
    for k, lr in enumerate(lrs):
        if k == resume_at:
            saved = io.BytesIO()
            torch.save(opt.state_dict(), saved)
            params = [torch.nn.Parameter(p.detach().clone()) for p in params]
            opt = make(params)
            opt.load_state_dict(torch.load(io.BytesIO(saved.getvalue())))
        for group in opt.param_groups:
            group["lr"] = lr
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.from_numpy(g[k] * np.float32(grad_factor))
        opt.step()
    return [p.detach().numpy() for p in params]


def _optimizers(spec: dict, arrays: dict, out: dict) -> None:
    for case in spec["optim"]:
        name, cfg = case["name"], TrainConfig(**case["cfg"])
        weights = [arrays[f"{name}/w{i}"] for i in range(case["params"])]
        grads = [arrays[f"{name}/g{i}"] for i in range(case["params"])]
        rescale = 1.0 / case["batch"]
        if case["wd"] is None:

            def make(ps, cfg=cfg, rescale=rescale):
                return optim.make_optimizer(cfg, ps, rescale_grad=rescale)
        else:  # adam/rmsprop with a weight decay the product never passes: the kernels' rule

            def make(ps, case=case, cfg=cfg, rescale=rescale):
                kind = optim.Adam if cfg.optimizer == "adam" else optim.RMSProp
                extra = (
                    {"beta1": cfg.beta_1, "beta2": cfg.beta_2}
                    if kind is optim.Adam
                    else {"gamma1": cfg.gamma}
                )
                return kind(
                    ps,
                    learning_rate=cfg.learning_rate,
                    rescale_grad=rescale,
                    epsilon=cfg.eps,
                    wd=case["wd"],
                    **extra,
                )

        for tag, result in (
            ("final", _trajectory(make, weights, grads, case["lrs"])),
            (
                "resumed",
                _trajectory(make, weights, grads, case["lrs"], resume_at=case["resume_at"]),
            ),
            (
                "built_in",
                _trajectory(
                    lambda ps, c=cfg: _BUILT_IN[c.optimizer](ps, c),
                    weights,
                    grads,
                    case["lrs"],
                    grad_factor=rescale,
                ),
            ),
        ):
            for i, w in enumerate(result):
                out[f"{name}/{tag}/w{i}"] = w


def _losses(arrays: dict, out: dict) -> None:
    labels, multi = torch.from_numpy(arrays["loss/labels"]), torch.from_numpy(arrays["loss/multi"])
    pos_weight = torch.from_numpy(arrays["loss/pos_weight"])
    kinds = {
        "softmax": lambda x: losses.per_sample_losses(x, labels, multi_label=False),
        "bce": lambda x: losses.per_sample_losses(x, multi, multi_label=True),
        "bce_weighted": lambda x: losses.per_sample_losses(x, multi, True, pos_weight),
        "bce_fused": lambda x: F.binary_cross_entropy_with_logits(x, multi, reduction="none").mean(
            dim=1
        ),
    }
    for kind, loss_fn in kinds.items():
        logits = torch.from_numpy(arrays["loss/logits"]).requires_grad_()
        value = loss_fn(logits)
        value.sum().backward()
        out[f"loss/{kind}/value"] = value.detach().numpy()
        out[f"loss/{kind}/grad"] = logits.grad.numpy()


def _chain(spec: dict, arrays: dict, out: dict) -> None:
    """Hosts x devices ranks, each back-propagating its slice's loss sum; the gradients are
    averaged as DistributedDataParallel averages them; the optimizer compensates."""
    for case in spec["chain"]:
        name, cfg = case["name"], TrainConfig(**case["cfg"])
        hosts, devices, batch = case["hosts"], case["devices"], case["batch"]
        layer = torch.nn.Linear(*arrays[f"{name}/weight"].shape[::-1])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(arrays[f"{name}/weight"]))
            layer.bias.copy_(torch.from_numpy(arrays[f"{name}/bias"]))
        sizes = losses.device_slices(batch, devices)
        ranks = hosts * len(sizes)
        opt = optim.make_optimizer(
            cfg, layer.parameters(), rescale_grad=losses.rescale_grad(batch, hosts, ranks)
        )
        pos_weight = torch.from_numpy(arrays[f"{name}/pos_weight"]) if case["weighted"] else None
        for x, y in zip(arrays[f"{name}/x"], arrays[f"{name}/y"], strict=True):
            summed = [torch.zeros_like(p) for p in layer.parameters()]
            starts = np.cumsum([0, *sizes])
            for h in range(hosts):
                for start, stop in zip(starts[:-1], starts[1:], strict=True):
                    rows = slice(h * batch + start, h * batch + stop)
                    logits = layer(torch.from_numpy(x[rows]))
                    labels = torch.from_numpy(y[rows])
                    loss = losses.per_sample_losses(logits, labels, cfg.multi_label, pos_weight)
                    rank_grads = torch.autograd.grad(loss.sum(), list(layer.parameters()))
                    for total, g in zip(summed, rank_grads, strict=True):
                        total += g
            for p, total in zip(layer.parameters(), summed, strict=True):
                p.grad = total / ranks
            opt.step()
        out[f"{name}/weight"] = layer.weight.detach().numpy()
        out[f"{name}/bias"] = layer.bias.detach().numpy()
    for batch, devices in spec["splits"]:
        out[f"split/{batch}/{devices}"] = np.array(losses.device_slices(batch, devices))


def _scaler(spec: dict, arrays: dict, out: dict) -> None:
    scaler = precision.DynamicLossScaler(spec["scaler"]["initial"])
    scales = []
    for overflow in spec["scaler"]["overflows"]:
        scales.append(scaler.scale)
        scaler.record(overflow)
    out["scaler/scales"] = np.array(scales)
    # Full steps: a scaled backward + skip on overflow equals plain steps on the clean batches.
    cfg = TrainConfig(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.01)
    grads = arrays["scaler/grads"]
    scaled_w = torch.nn.Parameter(torch.from_numpy(arrays["scaler/w"].copy()))
    plain_w = torch.nn.Parameter(torch.from_numpy(arrays["scaler/w"].copy()))
    scaled_opt = optim.make_optimizer(cfg, [scaled_w], rescale_grad=0.25)
    plain_opt = optim.make_optimizer(cfg, [plain_w], rescale_grad=0.25)
    scaler, ran = precision.DynamicLossScaler(), []
    for g in grads:
        scaled_w.grad = torch.from_numpy(g * np.float32(scaler.scale))
        ran.append(scaler.step(scaled_opt))
        if np.isfinite(g).all():
            plain_w.grad = torch.from_numpy(g)
            plain_opt.step()
    out["scaler/ran"] = np.array(ran)
    out["scaler/scaled_w"] = scaled_w.detach().numpy()
    out["scaler/plain_w"] = plain_w.detach().numpy()
    out["scaler/t"] = np.array([scaled_opt.state[scaled_w]["t"], plain_opt.state[plain_w]["t"]])


def _edges(arrays: dict, out: dict) -> None:
    """A fix_gamma gamma (trainable, no gradient) and a grad_req='null' parameter; refusals."""
    cfg = TrainConfig(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.1)
    gamma = torch.nn.Parameter(torch.from_numpy(arrays["edge/gamma"].copy()))
    frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
    opt = optim.make_optimizer(cfg, [gamma, frozen], rescale_grad=0.5)
    opt.step()
    out["edge/gamma"], out["edge/frozen"] = gamma.detach().numpy(), frozen.detach().numpy()
    out["edge/param_count"] = np.array(len(opt.param_groups[0]["params"]))
    refusals = {
        "optimizer": lambda: optim.make_optimizer(
            TrainConfig(optimizer="adagrad"), [gamma], rescale_grad=1.0
        ),
        "no_params": lambda: optim.make_optimizer(cfg, [frozen], rescale_grad=1.0),
        "batch": lambda: losses.rescale_grad(0),
        "slices": lambda: losses.device_slices(4, 0),
        "dtype": lambda: precision.autocast("int8", "cpu"),
        "pos_weight": lambda: losses.per_sample_losses(
            torch.zeros(2, 3), torch.zeros(2), multi_label=False, pos_weight=torch.ones(3)
        ),
    }
    for what, call in refusals.items():
        try:
            call()
        except ValueError as exc:
            out[f"refused/{what}"] = np.array(str(exc))


def main(in_path: str, out_path: str) -> None:
    torch.manual_seed(0)
    spec, arrays = read_inputs(in_path)
    out: dict[str, np.ndarray] = {}
    _optimizers(spec, arrays, out)
    _losses(arrays, out)
    _chain(spec, arrays, out)
    _scaler(spec, arrays, out)
    _edges(arrays, out)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
