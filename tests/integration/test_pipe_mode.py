"""Pipe mode as SageMaker runs it (feeder threads creating ``<channel>_<n>`` FIFOs per pass)
and augmented manifests in Pipe and File mode.

The training stream is an augmented manifest whose labels are written in every form SageMaker
may send (``2``, ``"2"``, ``2.0``, ``[2]``); the validation stream is a ``.rec`` file made by
MXNet's own ``tools/im2rec.py``. One in-process Pipe-mode job is shared by several tests.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import pytest
from PIL import Image

from tests.conftest import JobResult
from tests.datagen import Item, make_class_folders
from tests.integration.conftest import ENGINES, REPO, TINY, assert_engine, run_training
from tests.pipe_feeder import Feeder, manifest_stream
from tests.ports import free_port
from train import artifacts

pytestmark = pytest.mark.integration

PIPE_CHANNEL = {
    "ContentType": "application/x-recordio",
    "TrainingInputMode": "Pipe",
    "S3DistributionType": "FullyReplicated",
}
MANIFEST_CHANNEL = {**PIPE_CHANNEL, "RecordWrapperType": "RecordIO"}
REC_CHANNEL = {**PIPE_CHANNEL, "RecordWrapperType": "None"}
EPOCHS = 3


def _label_forms(item: Item):
    """The label of ``item`` in one of the forms SageMaker may stream."""
    return [str(item.label), item.label, float(item.label), [item.label], f'"{item.label}"'][
        item.index % 5
    ]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    """Generated images, a manifest for train and an im2rec-made .rec for validation."""
    root = tmp_path_factory.mktemp("pipe_images")
    train = make_class_folders(root / "train", 3, 32, seed=0)
    validation = make_class_folders(root / "validation", 3, 8, seed=1)
    lst = root / "val.lst"
    lst.write_text("".join(f"{i.index}\t{i.label}\t{i.relpath}\n" for i in validation))
    im2rec = Path(mx.__file__).parent / "tools" / "im2rec.py"
    subprocess.run(
        [sys.executable, str(im2rec), str(root / "val"), str(root / "validation"),
         "--resize", "36", "--quality", "95"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    lines = [
        {
            "source-ref": f"train/{i.relpath}",
            "class": _label_forms(i),
            "class-metadata": {"class-name": f"class_{i.label}", "type": "groundtruth/x"},
        }
        for i in train
    ]
    return {"root": root, "train": lines, "rec": (root / "val.rec").read_bytes()}


def _tree(base: Path, channels: dict, **hyperparameters: str) -> Path:
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hps = {**TINY, "num_classes": "3", "num_training_samples": "96", "epochs": str(EPOCHS)}
    hps.update({"pipe_shuffle_buffer": "32", "pipe_wait_timeout": "10", **hyperparameters})
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    (base / "input" / "data").mkdir(parents=True)
    return base


def _feed(base: Path, images: dict, *, attributes=("source-ref", "class"), train_passes=EPOCHS):
    data = base / "input" / "data"
    train = manifest_stream(images["train"], images["root"], attributes, seed=7)
    feeders = [
        Feeder(data, "train", train, train_passes, timeout=60),
        Feeder(data, "validation", lambda _: images["rec"], EPOCHS, timeout=60),
    ]
    for feeder in feeders:
        feeder.start()
    return feeders


def _accuracies(log: str) -> list[float]:
    return [float(v) for v in re.findall(r"Epoch\[\d+\] Validation-accuracy=([0-9.]+)", log)]


def _run_in_process(base: Path) -> JobResult:
    """``train.main.run([])`` on ``base``, with its log captured (module-scoped runs cannot use
    the function-scoped ``run_job`` fixture)."""
    from train import main

    text = io.StringIO()
    handler = logging.StreamHandler(text)
    root, previous = logging.getLogger(), signal.getsignal(signal.SIGTERM)
    level = root.level
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAGEMAKER_BASE_DIR", str(base))
        patch.delenv("IC_SCRATCH_DIR", raising=False)
        patch.delenv("TRAINING_JOB_NAME", raising=False)
        patch.setattr(main, "configure_logging", lambda: None)
        # The job lifts Pillow's cap for the whole process: restore it for the tests after.
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            code = main.run([])
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
            signal.signal(signal.SIGTERM, previous)
    failure = base / "output" / "failure"
    return JobResult(
        code, failure.read_text() if failure.is_file() else None, text.getvalue(), base
    )


@pytest.fixture(scope="module")
def pipe_job(images, tmp_path_factory):
    """One Pipe-mode job: a manifest stream for train, an im2rec stream for validation."""
    base = _tree(
        tmp_path_factory.mktemp("pipe_job") / "opt_ml",
        {"train": MANIFEST_CHANNEL, "validation": REC_CHANNEL},
    )
    feeders = _feed(base, images)
    start = time.monotonic()
    result = _run_in_process(base)
    return result, feeders, time.monotonic() - start


def test_pipe_job_learns_and_writes_the_builtin_model(pipe_job):
    result, _, _ = pipe_job
    assert result.code == 0, (result.failure or "") + result.log[-3000:]
    assert max(_accuracies(result.log)) >= 0.8  # chance is 1/3
    files = artifacts.locate_model(result.base / "model")
    assert files.image_shape == (3, 32, 32) and not files.multi_label
    assert len(artifacts.params_epochs(result.base / "model")) == 1
    assert (result.base / "model" / "image-classification-symbol.json").is_file()
    assert (result.base / "output" / "success").exists()


def test_pipe_job_reads_each_fifo_once_and_keeps_no_training_data(pipe_job):
    result, (train, validation), _ = pipe_job
    assert train.opened == list(range(EPOCHS)) and train.error is None
    assert validation.opened == [0]  # validation is read once, as File mode stores it
    assert "Read 24 validation images from validation_0" in result.log
    assert "num_training_samples=96 but" not in result.log  # the stream matched it
    scratch = sorted(p.name for p in (result.base / "scratch" / "pipe").iterdir())
    assert scratch == ["validation.idx", "validation.rec"]  # every training shard was deleted


def test_the_pytorch_engine_reads_the_fifos_itself_and_learns(images, tmp_path: Path):
    """The PyTorch engine's process reads each pass's FIFO in shards, as the MXNet engine.
    (A subprocess: the engine process logs to the job's stdout, which caplog does not see.)"""
    base = _tree(
        tmp_path / "opt_ml",
        {"train": MANIFEST_CHANNEL, "validation": REC_CHANNEL},
        training_engine="pytorch",
    )
    train, validation = _feed(base, images)
    result = run_training(base, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_engine(result.stdout, "pytorch")
    assert max(_accuracies(result.stdout)) >= 0.8  # chance is 1/3
    assert train.opened == list(range(EPOCHS)) and train.error is None
    assert validation.opened == [0]
    assert len(artifacts.params_epochs(base / "model")) == 1
    scratch = sorted(p.name for p in (base / "scratch" / "pipe").iterdir())
    assert scratch == ["validation.idx", "validation.rec"]  # every training shard was deleted


def test_a_resumed_job_reads_the_fifos_from_0_again(pipe_job, images, tmp_path: Path):
    """After a restart SageMaker numbers the FIFOs from 0 while training resumes at a later
    epoch: the job must open train_0 for its epoch 3, not wait for train_3."""
    result, _, _ = pipe_job
    base = tmp_path / "opt_ml"
    shutil.copytree(result.base, base, ignore=shutil.ignore_patterns("train_*", "validation_*"))
    hps_path = base / "input" / "config" / "hyperparameters.json"
    hps_path.write_text(json.dumps({**json.loads(hps_path.read_text()), "epochs": "4"}))
    train, validation = _feed(base, images, train_passes=1)
    resumed = _run_in_process(base)
    assert resumed.code == 0, (resumed.failure or "") + resumed.log[-3000:]
    assert train.opened == [0] and validation.opened == [0]
    assert "Epoch[3] Train-accuracy" in resumed.log and "Epoch[0] Train" not in resumed.log


def test_a_streamed_train_channel_with_a_file_mode_validation_channel(images, tmp_path: Path):
    """Input mode is per channel: train streamed, validation an im2rec .rec on disk (packed as
    File mode packs it)."""
    file_channel = {**REC_CHANNEL, "TrainingInputMode": "File"}
    base = _tree(
        tmp_path / "opt_ml",
        {"train": MANIFEST_CHANNEL, "validation": file_channel},
        epochs="1",
    )
    (base / "input" / "data" / "validation").mkdir()
    (base / "input" / "data" / "validation" / "val.rec").write_bytes(images["rec"])
    data = base / "input" / "data"
    train = manifest_stream(images["train"], images["root"], ("source-ref", "class"), seed=7)
    feeder = Feeder(data, "train", train, 1, timeout=60)
    feeder.start()
    result = _run_in_process(base)
    assert result.code == 0, (result.failure or "") + result.log[-3000:]
    assert feeder.opened == [0]
    assert not (data / "validation_0").exists()
    assert len(_accuracies(result.log)) == 2  # the one epoch's, then the saved model's


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (("class", "source-ref"), "record 0 of train_0 is not an image: it looks like JSON text"),
        (("source-ref",), "record 1 of train_0 is an image where the label of record 0"),
        (
            ("source-ref", "class", "class-metadata"),
            'record 2 of train_0 is not an image: it looks like JSON text `{"class-name": ',
        ),
    ],
)
def test_a_stream_that_does_not_alternate_image_and_label_fails_at_once(
    tmp_path: Path, images, run_job, attributes, message
):
    base = _tree(tmp_path / "opt_ml", {"train": MANIFEST_CHANNEL, "validation": REC_CHANNEL})
    _feed(base, images, attributes=attributes)
    start = time.monotonic()
    result = run_job(base)
    assert result.code == 1 and result.failure is not None
    assert message in result.failure
    assert "AttributeNames must list exactly two attributes, the image first" in result.failure
    assert time.monotonic() - start < 30


def test_a_missing_fifo_fails_naming_it_within_the_timeout(tmp_path: Path, images, run_job):
    base = _tree(
        tmp_path / "opt_ml",
        {"train": MANIFEST_CHANNEL, "validation": REC_CHANNEL},
        epochs="2",
        pipe_wait_timeout="2",
    )
    _feed(base, images, train_passes=1)  # never creates train_1
    start = time.monotonic()
    result = run_job(base)
    assert result.code == 1 and result.failure is not None
    assert "train_1 did not appear within 2 s" in result.failure
    assert "Epoch[0] Validation-accuracy" in result.log
    assert time.monotonic() - start < 60


def test_num_training_samples_is_required_in_pipe_mode(tmp_path: Path, run_job):
    base = _tree(tmp_path / "opt_ml", {"train": MANIFEST_CHANNEL, "validation": REC_CHANNEL})
    hps_path = base / "input" / "config" / "hyperparameters.json"
    hps = json.loads(hps_path.read_text())
    del hps["num_training_samples"]
    hps_path.write_text(json.dumps(hps))
    result = run_job(base)
    assert result.code == 1
    assert "num_training_samples is required in Pipe mode" in (result.failure or "")


def test_file_mode_manifest_with_s3_and_relative_refs(tmp_path: Path, images, run_job):
    """Ground Truth output copied next to its manifests, multi-label with class ids."""
    base = _tree(
        tmp_path / "opt_ml",
        {
            name: {"ContentType": "application/x-image; label-format=class-id"}
            for name in ("train", "validation")
        },
        multi_label="1",
    )
    data = base / "input" / "data"
    shutil.copytree(images["root"] / "train", data / "train" / "images")
    shutil.copytree(images["root"] / "validation", data / "validation")
    train_lines = [
        {
            "source-ref": line["source-ref"].replace("train/", "s3://bucket/gt-job/images/", 1),
            "labels": _ids(line),
            "labels-metadata": {"class-map": {"0": "a"}},
        }
        for line in images["train"]
    ]
    (data / "train" / "output.manifest").write_text(
        "".join(json.dumps(line) + "\n" for line in train_lines)
    )
    validation_lines = [
        {
            "source-ref": p.relative_to(data / "validation").as_posix(),
            "labels": f"[{p.parent.name[-1]}]",
        }
        for p in sorted((data / "validation").rglob("*.jpg"))
    ]
    (data / "validation" / "validation.manifest").write_text(
        "".join(json.dumps(line) + "\n" for line in validation_lines)
    )
    result = run_job(base)
    assert result.code == 0, (result.failure or "") + result.log[-3000:]
    assert "Using output.manifest (96 images) for the train channel" in result.log
    assert "Skipped" not in result.log
    assert max(_accuracies(result.log)) >= 0.8  # mean per-class accuracy
    assert artifacts.locate_model(base / "model").multi_label


def _ids(line: dict) -> list[int]:
    label = line["class"]
    value = json.loads(label) if isinstance(label, str) else label
    return value if isinstance(value, list) else [int(value)]


@pytest.mark.parametrize("engine", ENGINES)
def test_two_hosts_split_a_replicated_stream_and_stay_in_step(images, tmp_path: Path, engine):
    """FullyReplicated: each host is fed every record, in its own order; each trains on its
    CRC-32 share and runs the same number of batches (dist_sync would hang otherwise)."""
    hosts, port = ["127.0.0.1", "localhost"], str(free_port())
    bases, feeders = [], []
    for number, host in enumerate(hosts):
        base = _tree(
            tmp_path / host,
            {"train": MANIFEST_CHANNEL, "validation": REC_CHANNEL},
            epochs="2",
            kv_store="dist_sync",
            _ps_port=port,
            training_engine=engine,
        )
        (base / "input/config/resourceconfig.json").write_text(
            json.dumps({"current_host": host, "hosts": hosts})
        )
        data = base / "input" / "data"
        train = manifest_stream(images["train"], images["root"], ("source-ref", "class"), number)
        feeders.append(Feeder(data, "train", train, 2, timeout=120))
        feeders.append(Feeder(data, "validation", lambda _: images["rec"], 2, timeout=120))
        bases.append(base)
    for feeder in feeders:
        feeder.start()
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
    logs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log[-3000:]
        assert_engine(log, engine)
    shares = [
        [int(k) for k in re.findall(r"train_\d: 96 training images, (\d+) for this host", log)]
        for log in logs
    ]
    assert len(shares[0]) == len(shares[1]) == 2
    assert shares[0][0] + shares[1][0] == 96 and 0 < shares[0][0] < 96
    assert shares[0][0] == shares[0][1]  # the share depends on the records, not their order
    assert artifacts.params_epochs(bases[0] / "model")
