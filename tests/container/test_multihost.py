"""Two hosts on MXNet's parameter server, through the SDK's local mode (``instance_count=2``).

Two containers, ``algo-1`` and ``algo-2``, on the SDK's private ``sagemaker-local`` network train
with ``kv_store=dist_sync``, ``mini_batch_size=16`` each; one host trains with 32. The total
batch is the same, so the saved models' validation accuracies must agree within a small
tolerance, and so must the per-epoch validation curves on average.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from tests.container.conftest import SMALL_HYPERPARAMETERS
from tests.container.test_sdk_local_mode import (  # noqa: F401 - sdk_offline is a fixture
    NUM_CLASSES,
    generated_channels,
    sdk_offline,
    train_local,
    unique,
)

pytestmark = [pytest.mark.usefixtures("sdk_offline"), pytest.mark.timeout(1500)]

TRAIN_PER_CLASS = 48  # 144 images: 4-5 steps of 32 per epoch

TOLERANCE = 0.1  # 24 validation images: one image is 0.042
CURVE_TOLERANCE = 0.15  # mean per-epoch gap (measured: 0.02)
HYPERPARAMETERS = {
    **SMALL_HYPERPARAMETERS,
    "num_classes": str(NUM_CLASSES),
    "epochs": "6",
    "learning_rate": "0.01",  # at 0.05 both runs swing between 0 and 1 (BatchNorm, 144 images)
    "seed": "1",
}


def validation_curve(root: Path) -> list[float]:
    """Validation accuracy per epoch, from the chief's metrics.csv."""
    with (root / "artifacts" / "output" / "data" / "metrics.csv").open() as f:
        return [float(row["validation_accuracy"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def channels(tmp_path_factory) -> dict[str, Path]:
    return generated_channels(
        tmp_path_factory.mktemp("multihost") / "data",
        train_per_class=TRAIN_PER_CLASS,
        val_per_class=8,
    )


def test_two_hosts_dist_sync_match_one_host_with_the_same_total_batch(
    cpu_image, channels, tmp_path, capfd
) -> None:
    one_host = {**HYPERPARAMETERS, "mini_batch_size": "32"}
    one = train_local(cpu_image, channels, one_host, tmp_path / unique("one-host"))
    two = train_local(
        cpu_image,
        channels,
        {**HYPERPARAMETERS, "mini_batch_size": "16", "kv_store": "dist_sync"},
        tmp_path / unique("two-hosts"),
        instance_count=2,
    )
    log = capfd.readouterr().out  # the SDK copies the containers' output (compose-prefixed)
    # The parameter server really ran: the scheduler and a server on algo-1 (algo-2 runs a server
    # too unless single_server), and both hosts trained as workers.
    assert re.search(r"algo-1.*parameter-server scheduler", log), log[-6000:]
    assert re.search(r"algo-1.*parameter-server server", log), log[-6000:]
    assert not re.search(r"algo-2.*parameter-server scheduler", log)
    assert re.search(r"algo-2.*Epoch\[0\] Train-accuracy=", log), log[-6000:]
    single, distributed = validation_curve(one), validation_curve(two)
    assert len(single) == len(distributed) == int(HYPERPARAMETERS["epochs"])
    # The saved model is the best epoch's: its accuracy must match, and be better than chance.
    assert max(single) > 1 / NUM_CLASSES + 0.3, single
    assert max(distributed) == pytest.approx(max(single), abs=TOLERANCE), (single, distributed)
    # And the two runs learn alike, epoch by epoch.
    gaps = [abs(a - b) for a, b in zip(single, distributed, strict=True)]
    assert sum(gaps) / len(gaps) <= CURVE_TOLERANCE, (single, distributed)
    # Only the chief writes the model.
    assert re.search(r"algo-1.*Saved checkpoint to", log)
    assert not re.search(r"algo-2.*Saved checkpoint to", log)
    params = list((two / "artifacts" / "model").glob("image-classification-*.params"))
    assert len(params) == 1
