"""The data audit stays cheap: its images/s against the training images/s of a TINY job's
network (ResNet-20 at 32 px, batch 128) on this same machine, as a ratio (machines differ).

The audit must take under 10% of the first epoch, i.e. audit all images (training and
validation) at least 10 x (all / training) times faster than training steps train them.
Measured back to back in rounds, the median of the paired ratios, so that load from other work
hits both alike; in a fresh process whose MXNet has the job's compute threads
(``train.devices.configure_cpu_threads``). On 2,000 distinct generated pictures
(tests/insight_data.clean_set); benchmarks/bench_audit.py measures a real job on 50,000
tests/datagen images (whose near-identical classes make crowds the audit does not compare, so
they are the cheaper case).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

from tests.integration.conftest import REPO

ROUNDS = 3
BATCH = 128
CLASSES = 8


def _part(images: list[bytes], labels: list[int]) -> Any:
    from train.insight.audit import Part

    return Part(list(range(len(images))), [(float(v),) for v in labels], images, [])


def measure() -> dict[str, Any]:
    """Rounds of (training images/s, audit images/s); run in a fresh process."""
    from train import devices

    devices.configure_cpu_threads()  # before MXNet is imported, as the job does
    import mxnet as mx
    from mxnet import autograd, gluon

    from tests.insight_data import clean_set
    from train import config, model
    from train.insight.audit import audit

    hps = {"num_classes": str(CLASSES), "num_training_samples": "1600", "num_layers": "20"}
    cfg = config.parse_hyperparameters({**hps, "image_shape": "3,32,32"})
    net = model.from_scratch(cfg, CLASSES)
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    batch = mx.nd.random.uniform(0, 255, (BATCH, 3, 32, 32))
    label = mx.nd.array([k % CLASSES for k in range(BATCH)])

    def train_rate(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            with autograd.record():
                value = loss(net(batch), label)
            value.backward()
            trainer.step(BATCH)
            value.asnumpy()
        return steps * BATCH / (time.perf_counter() - start)

    train_rate(2)  # warm-up: graph building, allocations
    data = clean_set(per_class=200, classes=CLASSES)
    train = _part(data.train, data.train_labels)
    validation = _part(data.validation, data.validation_labels)
    images = len(data.train) + len(data.validation)
    rounds = []
    for _ in range(ROUNDS):
        training = train_rate(2)
        report = audit(train, validation, [str(k) for k in range(CLASSES)], (3, 32, 32), workers=2)
        rounds.append(
            {"train": training, "audit": images / report["seconds"], "findings": report["findings"]}
        )
    return {"rounds": rounds, "images": images, "train_images": len(data.train)}


def test_audit_is_over_ten_times_faster_than_training_per_image() -> None:
    probe = "import json; from tests.integration.test_insight_cost import measure; "
    probe += "print(json.dumps(measure()))"
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert all(r["findings"] == [] for r in found["rounds"])
    ratio = statistics.median(r["audit"] / r["train"] for r in found["rounds"])
    needed = 10 * found["images"] / found["train_images"]
    assert ratio >= needed, (found["rounds"], needed)
