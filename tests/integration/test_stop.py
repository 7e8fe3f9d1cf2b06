"""SIGTERM is honoured wherever a job spends time, not only between training batches.

The data set here packs in well over 10 s on two cores (hundreds of 1200x1200 PNGs, hard links
to two files so that generating it costs nothing): a stop request during packing must end the
job within seconds, with exit code 143, ``output/failure`` written and no cache entry that a
re-run would take as complete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.integration.conftest import REPO, TINY, run_training
from train import records

pytestmark = pytest.mark.integration

PER_CLASS = 400  # about 20 s of packing on two idle cores
SIDE = 1200


def _noisy_png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (SIDE // 8, SIDE // 8, 3), dtype=np.uint8)
    image = cv2.resize(small, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    image = cv2.add(image, rng.integers(0, 40, image.shape, dtype=np.uint8))
    return cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()


@pytest.fixture
def slow_to_pack(tmp_path: Path) -> Path:
    """Class folders of large PNGs (hard links) and the TINY hyperparameters, one epoch."""
    base = tmp_path / "opt_ml"
    train = base / "input" / "data" / "train"
    for label in range(2):
        folder = train / f"class_{label}"
        folder.mkdir(parents=True)
        original = folder / "original.png"
        original.write_bytes(_noisy_png(label))
        for i in range(PER_CLASS - 1):
            os.link(original, folder / f"copy_{i:04d}.png")
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hps = {**TINY, "num_classes": "2", "epochs": "1", "preprocess_threads": "2"}
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    return base


def _complete_cache_entries(base: Path) -> list[Path]:
    return [p.parent for p in (base / "scratch" / "records").glob(f"*/{records.MANIFEST_FILE}")]


def test_sigterm_during_packing_stops_within_seconds_and_a_rerun_packs_again(slow_to_pack):
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(slow_to_pack), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "train"],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    log = []
    for line in proc.stdout:
        log.append(line)
        if "Creating record files for train" in line:
            break
    time.sleep(3)  # well into packing
    assert proc.poll() is None, "".join(log)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    latency = time.monotonic() - sent
    output = "".join(log) + rest
    print(f"stop latency during packing: {latency:.2f} s")
    assert proc.returncode == 143, output[-3000:]
    assert latency < 5, output[-3000:]
    assert "Done creating record files" not in output
    failure = (slow_to_pack / "output" / "failure").read_text()
    assert failure.startswith("Training stopped by SIGTERM: stop requested while packing images")
    assert _complete_cache_entries(slow_to_pack) == []
    assert not list((slow_to_pack / "scratch" / "records").iterdir())  # no half-written folder

    started = time.monotonic()
    rerun = run_training(slow_to_pack)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert "Creating record files for train" in rerun.stdout
    assert "Using cached record file" not in rerun.stdout
    pack_time = _pack_seconds(rerun.stdout)
    print(f"packing took {pack_time:.1f} s; the re-run {time.monotonic() - started:.1f} s")
    assert pack_time > 10  # the stop above landed in a long packing, not at its end
    assert len(_complete_cache_entries(slow_to_pack)) == 2


def _pack_seconds(log: str) -> float:
    """Seconds between the first 'Creating record files' and the last 'Done creating' lines."""
    stamps = [
        time.mktime(time.strptime(line[1:20], "%m/%d/%Y %H:%M:%S"))
        for line in log.splitlines()
        if "Creating record files" in line or "Done creating record files" in line
    ]
    return stamps[-1] - stamps[0]
