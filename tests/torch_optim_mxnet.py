"""The MXNet half of ``tests/unit/test_torch_optim.py``: inputs, and the values MXNet 1.9.1
computes from them through the product's own set-up (``train.engines.mxnet.network.make_trainer``,
``train.engine``'s losses and batch split) and AMP's ``LossScaler``."""

from __future__ import annotations

import types
import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.contrib.amp.loss_scaler import LossScaler

from train import driver
from train.config import TrainConfig
from train.engines.mxnet import network
from train.engines.mxnet import steps as engine

STEPS, LR_STEP_AT, BATCH = 20, 10, 8
SHAPES = [(4, 3), (6,), (2, 3, 2, 2)]
SCHEDULE = {"lr_scheduler_step": (1,), "lr_scheduler_factor": 0.1}  # "epoch" = step // 10
SGD = {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.01}
ADAPTIVE = {"learning_rate": 0.1, "eps": 1e-3}  # an epsilon the gradients' size makes count
# name -> (hyperparameters, gradient size, weight decay passed to the optimizer directly)
CASES = {
    "sgd": (SGD, 1.0, None),
    "sgd_no_momentum": ({**SGD, "momentum": 0.0}, 1.0, None),
    "nag": ({**SGD, "optimizer": "nag"}, 1.0, None),
    "adam": ({**ADAPTIVE, "optimizer": "adam", "beta_1": 0.8, "beta_2": 0.99}, 0.01, None),
    "rmsprop": ({**ADAPTIVE, "optimizer": "rmsprop", "gamma": 0.8}, 0.01, None),
    "adam_defaults": ({"optimizer": "adam", "learning_rate": 0.1}, 1.0, None),
    "rmsprop_defaults": ({"optimizer": "rmsprop", "learning_rate": 0.1}, 1.0, None),
    "adam_wd": ({**ADAPTIVE, "optimizer": "adam", "beta_1": 0.8, "beta_2": 0.99}, 0.01, 0.05),
    "rmsprop_wd": ({**ADAPTIVE, "optimizer": "rmsprop", "gamma": 0.8}, 0.01, 0.05),
}
SPLITS = [(5, 2), (8, 3), (2, 4), (7, 7), (1, 3), (10, 4), (32, 3)]
SCALER_INITIAL = 2.0**24  # the cap: 2,000 clean steps must not double it
SCALER_OVERFLOWS = [False] * 2001 + [True, True, False, False, True] + [False] * 2005


class _Weights(gluon.Block):
    def __init__(self, shapes: list[tuple[int, ...]]):
        super().__init__()
        self.weights = [self.params.get(f"w{i}", shape=s) for i, s in enumerate(shapes)]


def _mxnet_trajectory(name: str, tmp: Path, arrays: dict) -> list[np.ndarray]:
    """20 steps through the Trainer the product builds, the learning rate set per "epoch"."""
    hyper, _, wd = CASES[name]
    cfg = TrainConfig(**hyper, **SCHEDULE)
    net = _Weights(SHAPES)
    net.initialize(ctx=mx.cpu())
    for i, p in enumerate(net.weights):
        p.set_data(mx.nd.array(arrays[f"{name}/w{i}"]))
    if wd is None:
        trainer = network.make_trainer(net, cfg, "device", False, mixed=False)
    else:
        optimizer = network.make_optimizer(cfg)
        optimizer.wd = wd
        trainer = gluon.Trainer(net.collect_params(), optimizer, kvstore="device")
    for k in range(STEPS):
        trainer.set_learning_rate(driver.learning_rate(cfg, k // LR_STEP_AT))
        with autograd.record():
            total = [
                (p.data() * mx.nd.array(arrays[f"{name}/g{i}"][k])).sum()
                for i, p in enumerate(net.weights)
            ]
        autograd.backward(total)
        trainer.step(BATCH)
    return [p.data().asnumpy() for p in net.weights]


def _mxnet_losses(arrays: dict, dtype: str) -> dict[str, np.ndarray]:
    """Gluon's losses as the product calls them, and their gradients w.r.t. the logits.

    In float64 MXNet runs its own kernels, as it does on GPUs. In float32 on the CPU it hands
    ``log_softmax`` to oneDNN, whose result is about 3e-6 off the exact value (measured here).
    """
    out = {}
    multi = mx.nd.array(arrays["loss/multi"], dtype=dtype)
    for kind, multi_label, labels, pos_weight in (
        ("softmax", False, mx.nd.array(arrays["loss/labels"], dtype=dtype), None),
        ("bce", True, multi, None),
        ("bce_weighted", True, multi, mx.nd.array(arrays["loss/pos_weight"], dtype=dtype)),
    ):
        setup = engine.make_loss(multi_label, None)
        logits = mx.nd.array(arrays["loss/logits"], dtype=dtype)
        logits.attach_grad()
        with autograd.record():
            value = engine._loss(setup, logits, labels, pos_weight)
        value.backward()
        out[f"loss/{kind}/value/{dtype}"] = value.asnumpy()
        out[f"loss/{kind}/grad/{dtype}"] = logits.grad.asnumpy()
    return out


def _mxnet_chain(case: dict, tmp: Path, arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """``train_one_epoch``'s step on hosts x devices CPU contexts: each host's batch split by
    ``engine._split``, per-slice losses, gradients summed over every context (as the device
    KVStore and dist_sync sum them), ``step(batch * hosts)``. In float64, where MXNet runs its
    own kernels (see :func:`_mxnet_losses`)."""
    name, hosts, devices, batch = case["name"], case["hosts"], case["devices"], case["batch"]
    cfg = TrainConfig(**case["cfg"])
    ctx = [mx.cpu(i) for i in range(hosts * devices)]
    net = gluon.nn.Dense(arrays[f"{name}/weight"].shape[0], in_units=arrays[f"{name}/x"].shape[2])
    net.initialize(ctx=ctx)
    net.cast("float64")
    net.weight.set_data(mx.nd.array(arrays[f"{name}/weight"], dtype="float64"))
    net.bias.set_data(mx.nd.array(arrays[f"{name}/bias"], dtype="float64"))
    trainer = network.make_trainer(net, cfg, "device", False, mixed=False)
    setup = engine.make_loss(cfg.multi_label, None)
    weights = arrays[f"{name}/pos_weight"]
    pos_weight = mx.nd.array(weights, dtype="float64") if case["weighted"] else None
    for x, y in zip(arrays[f"{name}/x"], arrays[f"{name}/y"], strict=True):
        with autograd.record():
            losses = []
            for h in range(hosts):
                rows = slice(h * batch, (h + 1) * batch)
                datas, labels = engine._split(
                    mx.nd.array(x[rows], dtype="float64"),
                    mx.nd.array(y[rows], dtype="float64"),
                    ctx[h * devices : (h + 1) * devices],
                )
                losses += [
                    engine._loss(setup, net(d), lab, pos_weight)
                    for d, lab in zip(datas, labels, strict=True)
                ]
        autograd.backward(losses)
        trainer.step(batch * hosts)
    return net.weight.data().asnumpy(), net.bias.data().asnumpy()


def _mxnet_scales() -> np.ndarray:
    """The loss scale each step runs at, from AMP's own ``LossScaler`` (started at
    ``SCALER_INITIAL`` through its private fields, so that the 2**24 cap is reached quickly)."""
    scaler = LossScaler()
    scaler._loss_scale = scaler._next_loss_scale = SCALER_INITIAL
    grads = {
        flag: types.SimpleNamespace(_grad=[mx.nd.array([np.inf if flag else 1.0])])
        for flag in (True, False)
    }
    scales = []
    for overflow in SCALER_OVERFLOWS:
        scales.append(scaler.loss_scale)
        assert scaler.has_overflow([grads[overflow]]) == overflow
    return np.array(scales)


def _mxnet_fix_gamma(arrays: dict) -> np.ndarray:
    """A ``fix_gamma`` BatchNorm gamma after one update: Gluon gives it ``grad_req='write'``
    and a zero gradient, so weight decay and momentum still move it."""
    data = mx.sym.var("data")
    graph = mx.sym.BatchNorm(data, fix_gamma=True, name="bn")
    with warnings.catch_warnings():  # Gluon warns that "data" has no type: it is inferred
        warnings.simplefilter("ignore", UserWarning)
        block = gluon.SymbolBlock(mx.sym.FullyConnected(graph, num_hidden=2, name="fc"), data)
    block.initialize()
    gamma = block.collect_params()["bn_gamma"]
    gamma.set_data(mx.nd.array(arrays["edge/gamma"]))
    cfg = TrainConfig(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.1)
    trainer = gluon.Trainer(block.collect_params(), network.make_optimizer(cfg), kvstore="device")
    with autograd.record():
        loss = block(mx.nd.array([[1.0, 2, 3], [2, 0, 1]])).sum()
    loss.backward()
    assert not gamma.grad().asnumpy().any()
    trainer.step(2)
    return gamma.data().asnumpy()


def chain_cases() -> list[dict]:
    momentum = {**SGD, "learning_rate": 0.5}
    return [
        {
            "name": "chain_softmax",
            "hosts": 2,
            "devices": 2,
            "batch": 5,
            "weighted": False,
            "cfg": momentum,
        },
        {
            "name": "chain_weighted",
            "hosts": 1,
            "devices": 3,
            "batch": 8,
            "weighted": True,
            "cfg": {**momentum, "multi_label": True, "use_weighted_loss": True},
        },
    ]


def _inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    arrays = {}
    for name, (_, size, _) in CASES.items():
        for i, shape in enumerate(SHAPES):
            arrays[f"{name}/w{i}"] = rng.normal(size=shape).astype(np.float32)
            arrays[f"{name}/g{i}"] = (rng.normal(size=(STEPS, *shape)) * size * BATCH).astype(
                np.float32
            )
    logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
    logits[0, :2] = logits[3, 4] = 0.0  # where relu/abs have no slope
    arrays["loss/logits"] = logits
    arrays["loss/labels"] = rng.integers(0, 5, size=6).astype(np.float32)
    arrays["loss/multi"] = (rng.random((6, 5)) > 0.6).astype(np.float32)
    arrays["loss/pos_weight"] = rng.uniform(0.5, 4.0, size=(1, 5)).astype(np.float32)
    for case in chain_cases():
        name, rows = case["name"], case["hosts"] * case["batch"]
        arrays[f"{name}/weight"] = rng.normal(size=(4, 6)).astype(np.float32)
        arrays[f"{name}/bias"] = rng.normal(size=4).astype(np.float32)
        arrays[f"{name}/x"] = rng.normal(size=(3, rows, 6)).astype(np.float32)
        if case["cfg"].get("multi_label"):
            arrays[f"{name}/y"] = (rng.random((3, rows, 4)) > 0.5).astype(np.float32)
        else:
            arrays[f"{name}/y"] = rng.integers(0, 4, size=(3, rows)).astype(np.float32)
        arrays[f"{name}/pos_weight"] = rng.uniform(0.5, 4.0, size=(1, 4)).astype(np.float32)
    arrays["edge/gamma"] = np.ones(3, dtype=np.float32)  # fix_gamma's forward writes 1 anyway
    arrays["scaler/w"] = rng.normal(size=3).astype(np.float32)
    arrays["scaler/grads"] = rng.normal(size=(6, 3)).astype(np.float32)
    arrays["scaler/grads"][2, 1] = np.inf
    return arrays


def build(tmp: Path) -> tuple[dict, dict[str, np.ndarray], dict]:
    """The torch side's spec and input arrays, and MXNet's results for them."""
    arrays = _inputs(np.random.default_rng(16))
    spec = {
        "optim": [
            {
                "name": name,
                "cfg": {**hyper, **SCHEDULE},
                "wd": wd,
                "params": len(SHAPES),
                "batch": BATCH,
                "resume_at": LR_STEP_AT,
                "lrs": [
                    driver.learning_rate(TrainConfig(**hyper, **SCHEDULE), k // LR_STEP_AT)
                    for k in range(STEPS)
                ],
            }
            for name, (hyper, _, wd) in CASES.items()
        ],
        "chain": chain_cases(),
        "splits": SPLITS,
        "scaler": {"initial": SCALER_INITIAL, "overflows": SCALER_OVERFLOWS},
    }
    mxnet_out = {name: _mxnet_trajectory(name, tmp, arrays) for name in CASES}
    for dtype in ("float64", "float32"):
        mxnet_out.update(_mxnet_losses(arrays, dtype))
    for case in chain_cases():
        mxnet_out[case["name"]] = _mxnet_chain(case, tmp, arrays)
    mxnet_out["splits"] = {
        (b, g): [
            d.shape[0]
            for d in engine._split(
                mx.nd.zeros((b, 1)), mx.nd.zeros(b), [mx.cpu(i) for i in range(g)]
            )[0]
        ]
        for b, g in SPLITS
    }
    mxnet_out["scaler/scales"] = _mxnet_scales()
    mxnet_out["edge/gamma"] = _mxnet_fix_gamma(arrays)
    return spec, arrays, mxnet_out
