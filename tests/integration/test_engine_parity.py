"""The PyTorch engine against the MXNet engine and against plain MXNet (issue 16).

- Its model files are MXNet's: ``mx.mod.Module(label_names=None)`` on the saved checkpoint,
  fed by MXNet's own ``ImageRecordIter``, reproduces the validation outputs the engine scored.
- Same data, same hyperparameters: it reaches the MXNet engine's best validation accuracy.
- Routing: what it cannot do is refused with a message that says what to do instead.
- Its log lines are MXNet's (``Epoch[N] Batch [50]`` speed lines included).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from tests.builtin_models import plain_mxnet_predict
from tests.datagen import make_sagemaker_tree
from tests.integration.conftest import (
    ENGINES,
    TINY,
    assert_engine,
    run_training,
    set_hyperparameters,
    use_engine,
)
from train import artifacts
from train.insight.page import VALIDATION_NPZ

pytestmark = pytest.mark.integration

VALIDATION = re.compile(r"Epoch\[\d+\] Validation-accuracy=([0-9.]+)")
SPEED_LINE = re.compile(
    r"Epoch\[0\] Batch \[50\]\tSpeed: [0-9.]+ samples/sec\taccuracy=[0-9.]+$", re.MULTILINE
)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _record_pixels(rec: Path, image_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Every record of ``rec`` once, in file order, as MXNet's ImageRecordIter delivers it for
    validation (centre crop, no augmentation), with its labels."""
    batches = mx.io.ImageRecordIter(
        path_imgrec=str(rec), data_shape=image_shape, batch_size=8, round_batch=False
    )
    pixels, labels = [], []
    for batch in batches:
        keep = batch.data[0].shape[0] - batch.pad
        pixels.append(batch.data[0].asnumpy()[:keep])
        labels.append(batch.label[0].asnumpy()[:keep])
    return np.concatenate(pixels), np.concatenate(labels)


def test_plain_mxnet_module_reproduces_the_pytorch_engines_validation_outputs(tiny_tree):
    use_engine(tiny_tree, "pytorch")
    set_hyperparameters(tiny_tree, epochs="2")
    job = run_training(tiny_tree)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert_engine(job.stdout, "pytorch")
    model = tiny_tree / "model"
    assert (model / artifacts.ONNX_FILE).is_file()
    saved = np.load(tiny_tree / "output" / "data" / VALIDATION_NPZ)
    engine_scores = _softmax(saved["outputs"])  # the engine's logits; the graph ends in softmax
    pixels, labels = _record_pixels(Path(str(saved["rec"])), (3, 32, 32))
    np.testing.assert_array_equal(labels, saved["labels"])  # the same images, in order
    (epoch,) = artifacts.params_epochs(model)
    plain = plain_mxnet_predict(model / artifacts.MODEL_PREFIX, epoch, pixels)
    difference = float(np.abs(plain - engine_scores).max())
    print(
        f"\nplain MXNet Module vs the PyTorch engine: max probability difference {difference:.1e}"
    )
    assert difference <= 1e-4
    assert engine_scores.argmax(axis=1).tolist() == plain.argmax(axis=1).tolist()


def test_both_engines_reach_the_same_best_validation_accuracy(tmp_path: Path):
    """A learnable generated set (three colour-and-stripe classes, 48 validation images) on which
    both engines reach 1.0 by the third of five epochs with these seeds: the issue's "within one
    point" is then a statement about the engines, not about luck. (At a learning rate of 0.05
    both wander for a few epochs and a single run compares luck.)"""
    best = {}
    for engine in ENGINES:
        base = make_sagemaker_tree(
            tmp_path / engine,
            val_per_class=16,
            hyperparameters={**TINY, "epochs": "5", "training_engine": engine},
        )
        job = run_training(base)
        assert job.returncode == 0, job.stdout[-3000:]
        assert_engine(job.stdout, engine)
        best[engine] = max(float(v) for v in VALIDATION.findall(job.stdout))
    print(f"\nbest validation accuracy: {best}")
    assert abs(best["pytorch"] - best["mxnet"]) <= 0.01, best
    assert min(best.values()) >= 0.95, best  # the set was learnt, so the comparison means something


def test_resuming_the_other_engines_checkpoints_is_refused_clearly(tiny_tree: Path):
    set_hyperparameters(tiny_tree, epochs="1", training_engine="mxnet")
    first = run_training(tiny_tree)
    assert first.returncode == 0, first.stdout[-3000:]
    set_hyperparameters(tiny_tree, epochs="2", training_engine="pytorch")
    second = run_training(tiny_tree)
    assert second.returncode == 1, second.stdout[-3000:]
    failure = (tiny_tree / "output" / "failure").read_text()
    assert "holds checkpoints of the mxnet training engine and this job runs the pytorch" in failure
    assert "set training_engine=mxnet to resume" in failure
    assert "Epoch[1] Train-accuracy" not in second.stdout


def test_dist_async_on_the_pytorch_engine_is_refused_before_any_work(tiny_tree: Path):
    set_hyperparameters(tiny_tree, training_engine="pytorch", kv_store="dist_async")
    config = tiny_tree / "input" / "config" / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}))
    job = run_training(tiny_tree, timeout=120)
    assert job.returncode == 1, job.stdout[-3000:]
    failure = (tiny_tree / "output" / "failure").read_text()
    assert "kv_store=dist_async is MXNet's parameter server" in failure
    assert "use dist_sync" in failure and "training_engine=mxnet" in failure
    assert "Creating record files" not in job.stdout


def test_a_missing_pytorch_environment_is_named_before_any_work(tiny_tree, run_job, monkeypatch):
    from train.engines import launch

    monkeypatch.setenv(launch.TORCH_PYTHON_ENV, str(tiny_tree / "no-such-venv" / "python"))
    monkeypatch.setattr(launch, "IMAGE_TORCH_PYTHON", tiny_tree / "no-opt-venv" / "python")
    monkeypatch.setattr(launch, "PROJECT_ROOT", tiny_tree)  # no .venv-torch there
    use_engine(tiny_tree, "pytorch")
    result = run_job(tiny_tree)
    assert result.code == 1
    assert "the PyTorch engine's environment is missing" in (result.failure or "")
    assert "training_engine=mxnet" in (result.failure or "")
    assert "Creating record files" not in result.log


@pytest.mark.parametrize("engine", ENGINES)
def test_speed_lines_every_50_batches_in_mxnets_format(tiny_tree: Path, engine: str):
    set_hyperparameters(tiny_tree, epochs="1", mini_batch_size="1", training_engine=engine)
    job = run_training(tiny_tree)
    assert job.returncode == 0, job.stdout[-3000:]
    assert_engine(job.stdout, engine)
    assert len(SPEED_LINE.findall(job.stdout)) == 1, job.stdout[-3000:]  # 96 batches: one line
