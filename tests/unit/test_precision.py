"""float16 as MXNet 1.9.1's AMP recipe has it: configuration, scaled loss, overflow skipping.

``amp.init()`` rewires MXNet for the whole process and cannot be undone, so each check runs in
a fresh Python process. The CPU cannot run float16 layers (MXNet has no CPU float16 dense
layer), so the graphs are inspected rather than run; the scaled-loss step runs with AMP's
machinery on but every operator left in float32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve_fixtures import make_model_dir
from train import devices, precision
from train.errors import ClientError

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


_CONFIGURATION = """
import json, sys
from pathlib import Path
import mxnet as mx
import numpy as np
from train import config, model, precision
from train.engines.mxnet.network import make_trainer
from train.formats.model_dir import seed_network

cfg = config.parse_hyperparameters(
    {"num_layers": "20", "image_shape": "3,32,32", "precision_dtype": "float16"}
)
out = {"mixed": precision.init(cfg.precision_dtype)}

def casts(symbol):
    nodes = json.loads(symbol.tojson(remove_amp_cast=False))["nodes"]
    return sum(1 for n in nodes if n["op"] in ("amp_cast", "amp_multicast"))

scratch = model.from_scratch(cfg, 3)
out["scratch_casts"] = casts(scratch(mx.sym.var("data")))

seed = seed_network(Path(sys.argv[1]), 3, (3, 32, 32))
before = {n: p.data().asnumpy() for n, p in seed.features.collect_params().items()}
out["loaded_casts_before"] = casts(seed.features(mx.sym.var("data")))
seed = precision.convert_loaded_graphs(seed, (3, 32, 32))
out["loaded_casts_after"] = casts(seed.features(mx.sym.var("data")))
after = seed.features.collect_params()
out["weights_kept"] = sorted(after.keys()) == sorted(before) and all(
    np.array_equal(after[n].data().asnumpy(), v) for n, v in before.items()
)
out["weight_dtypes"] = sorted({str(np.dtype(p.dtype)) for p in after.values()})

ctx = [mx.cpu(0), mx.cpu(1)]
seed.collect_params().reset_ctx(ctx)
trainer = make_trainer(seed, cfg, "device", False, out["mixed"])
trainer._init_kvstore()  # what the first step does; the attributes below are MXNet's own
out["kvstore"] = type(trainer._kvstore).__name__ if trainer._kvstore else None
out["update_on_kvstore"] = trainer._update_on_kvstore
out["loss_scale"] = trainer._amp_loss_scaler.loss_scale
print(json.dumps(out))
"""


def test_float16_configures_amp_for_every_model_source_and_the_trainer(tmp_path):
    seed = make_model_dir(tmp_path / "seed")  # an earlier model, for incremental training
    out = _run(_CONFIGURATION, str(seed))
    assert out["mixed"] is True
    assert out["scratch_casts"] > 0  # built after amp.init: casts to float16 in the graph
    assert out["loaded_casts_before"] == 0  # a graph loaded from JSON: AMP alone misses it
    assert out["loaded_casts_after"] > 0
    assert out["weights_kept"] and out["weight_dtypes"] == ["float32"]
    # Two devices: a KVStore sums the gradients, the trainer updates (and skips overflows).
    assert out["kvstore"] == "KVStore" and out["update_on_kvstore"] is False
    assert out["loss_scale"] == 2.0**16


_SCALED_STEP = """
import json, logging, threading
from pathlib import Path
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.contrib import amp

# AMP's machinery on (loss scaler, trainer hooks) with every operator left in float32, which
# any CPU runs; the production call below then finds AMP initialised.
amp.init(target_dtype="float16", target_precision_ops=[], conditional_fp32_ops=[], fp32_ops=[])
from train import config, precision
from train.engines.mxnet import steps as engine
from train.engines.mxnet.network import make_trainer

logging.basicConfig(level=logging.INFO)
cfg = config.parse_hyperparameters(
    {"optimizer": "sgd", "learning_rate": "0.1", "momentum": "0", "weight_decay": "0"}
)
mixed = precision.init("float16")
ctx = [mx.cpu(0), mx.cpu(1)]
rng = np.random.default_rng(0)
weight, data = rng.normal(size=(3, 4)), rng.normal(size=(8, 4))
labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.float32)

def dense(contexts):
    net = gluon.nn.Dense(3, in_units=4, use_bias=False)
    net.initialize(ctx=contexts)
    net.weight.set_data(mx.nd.array(weight))
    return net

net = dense(ctx)
trainer = make_trainer(net, cfg, "device", False, mixed)
setup = engine.make_loss(False, None)
stop = threading.Event()

def epoch(batch):
    it = mx.io.NDArrayIter(batch, labels, batch_size=8)
    engine.train_one_epoch(net, trainer, it, ctx, setup, epoch=0, stop=stop, mixed_precision=mixed)

# Reference: one plain float32 SGD step on one device.
ref = dense([mx.cpu()])
ref_trainer = gluon.Trainer(ref.collect_params(), "sgd", {"learning_rate": 0.1})
with autograd.record():
    loss = setup.loss(ref(mx.nd.array(data)), mx.nd.array(labels))
loss.backward()
ref_grad = ref.weight.grad().asnumpy()
ref_trainer.step(8)

out = {}
epoch(data)
out["grad_ratio"] = float(np.median(net.weight.grad(ctx[0]).asnumpy() / ref_grad))
weights, ref_weights = net.weight.data(ctx[0]).asnumpy(), ref.weight.data().asnumpy()
out["step_matches"] = bool(np.allclose(weights, ref_weights, atol=1e-6))
before = net.weight.data(ctx[0]).asnumpy()
bad = data.copy()
bad[0, 0] = np.inf
epoch(bad)  # an overflowing gradient: the update is skipped, the scale halved
out["skipped"] = bool(np.array_equal(net.weight.data(ctx[0]).asnumpy(), before))
epoch(data)
out["updated_after"] = not bool(np.array_equal(net.weight.data(ctx[0]).asnumpy(), before))
out["loss_scale"] = trainer._amp_loss_scaler.loss_scale
print(json.dumps(out))
"""


def test_the_backward_pass_runs_on_the_scaled_loss_and_an_overflow_skips_the_step():
    out = _run(_SCALED_STEP)
    assert out["grad_ratio"] == pytest.approx(2.0**16, rel=1e-4)  # gradients of the scaled loss
    assert out["step_matches"]  # ... divided back out by the trainer: the same update
    assert out["skipped"] and out["updated_after"]
    assert out["loss_scale"] == 2.0**15


def test_float16_on_several_hosts_is_refused_saying_why():
    with pytest.raises(ClientError, match="float16 cannot train on several hosts") as info:
        precision.check_multi_host("float16")
    assert "parameter servers" in str(info.value)
    precision.check_multi_host("float32")


def test_a_multi_host_float16_job_fails_before_reading_any_data(tmp_path, run_job, monkeypatch):
    # On GPU hosts MXNet runs (without one, float16 is refused even earlier, by the engine choice).
    t4 = devices.Gpu(0, "Tesla T4", (7, 5))
    monkeypatch.setattr(devices, "visible_gpus", lambda: [t4])
    base = tmp_path / "opt_ml"
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hps = {"num_classes": "3", "precision_dtype": "float16"}
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    hosts = {"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}
    (config / "resourceconfig.json").write_text(json.dumps(hosts))
    result = run_job(base)  # no data channel at all: reading data would fail differently
    assert result.code == 1
    assert result.failure.startswith(
        "Customer Error: precision_dtype=float16 cannot train on several hosts"
    )
