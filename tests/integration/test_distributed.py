"""Two hosts on one machine: MXNet's parameter server with dist_sync, as on SageMaker.

The two "hosts" are two processes with their own /opt/ml trees whose resourceconfig.json name
``127.0.0.1`` and ``localhost`` (both resolve here). Each runs its share of the ps-lite roles
(scheduler on the first, a server on each) and trains on its half of every epoch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datagen import make_sagemaker_tree
from tests.integration.conftest import ENGINES, REPO, TINY, assert_engine, run_training
from tests.ports import free_port
from train import artifacts

pytestmark = pytest.mark.integration

HOSTS = ["127.0.0.1", "localhost"]


def _accuracies(log: str) -> list[float]:
    return [float(v) for v in re.findall(r"Validation-accuracy=([0-9.]+)", log)]


@pytest.mark.parametrize("engine", ENGINES)  # PyTorch: gloo ranks meeting at the first host
def test_two_hosts_dist_sync_match_one_host_with_the_same_total_batch(tmp_path: Path, engine: str):
    hps = {**TINY, "epochs": "6", "training_engine": engine}
    port = str(free_port())
    bases = []
    for host in HOSTS:
        base = make_sagemaker_tree(
            tmp_path / host,
            train_per_class=64,
            hyperparameters={**hps, "kv_store": "dist_sync", "_ps_port": port},
        )
        (base / "input/config/resourceconfig.json").write_text(
            json.dumps({"current_host": host, "hosts": HOSTS})
        )
        bases.append(base)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "train"],
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SAGEMAKER_BASE_DIR": str(base)},
        )
        for base in bases
    ]
    logs = [proc.communicate(timeout=600)[0] for proc in procs]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log[-3000:]
    for host, log in zip(HOSTS, logs, strict=True):
        assert_engine(log, engine)
        assert f"Distributed training on 2 hosts (dist_sync), this is {host}" in log, log[-3000:]
    chief, other = bases
    assert artifacts.params_epochs(chief / "model")  # only the first host writes the model
    assert not (other / "model").exists() or not artifacts.params_epochs(other / "model")
    assert (chief / "checkpoints" / "127.0.0.1" / "state.json").is_file()

    single = make_sagemaker_tree(
        tmp_path / "single",
        train_per_class=64,
        hyperparameters={**hps, "mini_batch_size": str(2 * int(hps["mini_batch_size"]))},
    )
    alone = run_training(single)
    assert alone.returncode == 0, alone.stdout[-3000:]
    assert max(_accuracies(logs[0])) >= 0.8
    assert abs(max(_accuracies(logs[0])) - max(_accuracies(alone.stdout))) <= 0.15
