"""Two hosts on MXNet's parameter server, through the SDK's local mode (``instance_count=2``).

Two containers, ``algo-1`` and ``algo-2``, on the SDK's private ``sagemaker-local`` network train
with ``kv_store=dist_sync``, ``mini_batch_size=16`` each; one host trains with 32. The total
batch is the same, so the validation accuracies must agree within a small tolerance.
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
HYPERPARAMETERS = {
    **SMALL_HYPERPARAMETERS,
    "num_classes": str(NUM_CLASSES),
    "epochs": "6",
    "seed": "1",
}


def final_validation_accuracy(root: Path) -> float:
    """The last epoch's validation accuracy, from the chief's metrics.csv."""
    with (root / "artifacts" / "output" / "data" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["validation_accuracy"])


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
    # The parameter server really ran: a scheduler on algo-1, a server on each host.
    assert re.search(r"algo-1.*parameter-server scheduler", log), log[-6000:]
    assert re.search(r"algo-1.*parameter-server server", log), log[-6000:]
    assert re.search(r"algo-2.*parameter-server server", log), log[-6000:]
    assert not re.search(r"algo-2.*parameter-server scheduler", log)
    single, distributed = final_validation_accuracy(one), final_validation_accuracy(two)
    assert single > 1 / NUM_CLASSES + 0.2, single  # it learned something
    assert distributed == pytest.approx(single, abs=TOLERANCE), (single, distributed)
    # Only the chief writes the model.
    assert re.search(r"algo-1.*Saved checkpoint to", log)
    assert not re.search(r"algo-2.*Saved checkpoint to", log)
    params = list((two / "artifacts" / "model").glob("image-classification-*.params"))
    assert len(params) == 1
