"""Resumable checkpoints: save, load, restore, and refusal of another model's checkpoints."""

from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from train import checkpoint
from train.checkpoint import LoopState
from train.engines.mxnet.job import MXNetEngine
from train.errors import ClientError

FINGERPRINT = {"num_layers": 20, "num_classes": 3, "image_shape": [3, 32, 32], "multi_label": False}


def _net_and_trainer(seed: int, ctx=None, update_on_kvstore=None):
    mx.random.seed(seed)
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Normal(1.0), ctx=ctx or [mx.cpu()])
    trainer = gluon.Trainer(
        net.collect_params(),
        "sgd",
        {"learning_rate": 0.1, "momentum": 0.9},
        kvstore="device",
        update_on_kvstore=update_on_kvstore,
    )
    return net, trainer


def _engine(net, trainer, ctx=None) -> MXNetEngine:
    """The MXNet engine's own checkpoint methods, over a small network."""
    engine = MXNetEngine.__new__(MXNetEngine)
    engine.net, engine.trainer, engine.on_servers = net, trainer, False
    engine.ctx = ctx or [mx.cpu()]
    return engine


def _step(net, trainer):
    ctx = net.weight.list_ctx()
    x = mx.nd.arange(4 * len(ctx) * 2).reshape((-1, 4)) / 10
    with autograd.record():
        losses = [(net(part) ** 2).sum() for part in gluon.utils.split_and_load(x, ctx)]
    autograd.backward(losses)
    trainer.step(x.shape[0])


def _weights(net) -> np.ndarray:
    copies = [w.asnumpy() for w in net.weight.list_data()]
    for other in copies[1:]:
        np.testing.assert_array_equal(other, copies[0])  # every device holds the same weights
    return copies[0].copy()


def test_nothing_to_resume_in_an_empty_dir(tmp_path):
    assert checkpoint.load(tmp_path, FINGERPRINT) is None


def test_save_then_load_round_trips_the_loop_state(tmp_path):
    net, trainer = _net_and_trainer(0)
    state = LoopState(
        epoch=2,
        best_accuracy=0.75,
        best_epoch=1,
        epochs_without_improvement=1,
        history=[{"epoch": 0, "validation_accuracy": 0.75}],
        fingerprint=FINGERPRINT,
    )
    checkpoint.save(tmp_path, state, _engine(net, trainer), improved=False)
    assert checkpoint.load(tmp_path, dict(FINGERPRINT)) == state
    assert json.loads((tmp_path / checkpoint.STATE_FILE).read_text())["epoch"] == 2


@pytest.mark.parametrize(
    ("contexts", "update_on_kvstore"),
    [(1, None), (2, None), (2, False)],  # False: several devices with float16 loss scaling
)
def test_restore_gives_back_weights_and_optimizer_state(tmp_path, contexts, update_on_kvstore):
    ctx = [mx.cpu(i) for i in range(contexts)]
    net, trainer = _net_and_trainer(0, ctx, update_on_kvstore)
    _step(net, trainer)
    state = LoopState(epoch=1, fingerprint=FINGERPRINT)
    checkpoint.save(tmp_path, state, _engine(net, trainer), improved=True)
    _step(net, trainer)  # the "interrupted" continuation, for reference
    expected = _weights(net)

    fresh, fresh_trainer = _net_and_trainer(1, ctx, update_on_kvstore)
    assert not np.allclose(_weights(fresh), expected)
    checkpoint.restore(
        tmp_path, checkpoint.load(tmp_path, FINGERPRINT), _engine(fresh, fresh_trainer, ctx)
    )
    _step(fresh, fresh_trainer)
    # Same result only if the momentum buffers were restored along with the weights.
    assert np.allclose(_weights(fresh), expected, atol=1e-6)


def test_only_the_latest_epoch_is_kept_and_best_is_separate(tmp_path):
    net, trainer = _net_and_trainer(0)
    state = LoopState(fingerprint=FINGERPRINT)
    for epoch, improved in [(1, True), (2, False), (3, False)]:
        state.epoch = epoch
        checkpoint.save(tmp_path, state, _engine(net, trainer), improved=improved)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best.params", "net-0003.params", "state.json", "trainer-0003.states"]


def test_restore_best_loads_the_best_weights(tmp_path):
    net, trainer = _net_and_trainer(0)
    best = _weights(net)
    state = LoopState(epoch=1, fingerprint=FINGERPRINT)
    checkpoint.save(tmp_path, state, _engine(net, trainer), improved=True)
    _step(net, trainer)
    state.epoch = 2
    checkpoint.save(tmp_path, state, _engine(net, trainer), improved=False)
    checkpoint.restore_best(tmp_path, _engine(net, trainer))
    assert np.allclose(_weights(net), best)


def test_checkpoints_of_a_different_model_are_refused(tmp_path):
    net, trainer = _net_and_trainer(0)
    checkpoint.save(
        tmp_path, LoopState(epoch=1, fingerprint=FINGERPRINT), _engine(net, trainer), improved=True
    )
    other = {**FINGERPRINT, "num_classes": 5}
    with pytest.raises(ClientError) as info:
        checkpoint.load(tmp_path, other)
    message = str(info.value)
    assert "checkpoints of a different model" in message
    assert "'num_classes': 5" in message and "'num_classes': 3" in message


def test_checkpoints_of_the_other_engine_are_refused_with_the_way_out(tmp_path):
    net, trainer = _net_and_trainer(0)
    checkpoint.save(
        tmp_path, LoopState(epoch=1, fingerprint=FINGERPRINT), _engine(net, trainer), improved=True
    )  # written before engines were recorded: MXNet's
    with pytest.raises(ClientError) as info:
        checkpoint.load(tmp_path, {**FINGERPRINT, "engine": "pytorch"})
    assert "checkpoints of the mxnet training engine" in str(info.value)
    assert "training_engine=mxnet" in str(info.value)
    assert checkpoint.load(tmp_path, {**FINGERPRINT, "engine": "mxnet"}).epoch == 1
