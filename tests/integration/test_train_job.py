"""End-to-end training jobs on the CPU: accuracy, artifacts, logs, reports, input layouts."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import mxnet as mx
import numpy as np
import onnx
import pytest

from tests.datagen import make_class_folders, make_image
from tests.integration.conftest import (
    ENGINES,
    assert_engine,
    run_training,
    set_hyperparameters,
    use_engine,
)
from tests.onnx_checks import TOLERANCE, max_difference, pixels_of
from train import artifacts, model, records, reports
from train.formats import metadata, model_dir
from train.formats import onnx as onnx_format
from train.formats.metadata import InputConvention
from train.lst import Entry
from train.metric_lines import METRIC_DEFINITIONS

pytestmark = pytest.mark.integration


def _validation_accuracies(log: str) -> list[float]:
    return [float(v) for v in re.findall(r"Epoch\[\d+\] Validation-accuracy=([0-9.]+)", log)]


def assert_onnx_matches_plain_mxnet(base: Path) -> None:
    """The job's model.onnx answers as plain MXNet does on the job's model files, on real
    validation images (batches of 1 and 8)."""
    model = base / "model"
    files = artifacts.locate_model(model)
    epoch = artifacts.params_epochs(model)[-1]
    images = sorted((base / "input" / "data" / "validation").rglob("*.jpg"))[::3]
    pixels = pixels_of(images, files.image_shape)
    onnx_file, prefix = model / artifacts.ONNX_FILE, model / artifacts.MODEL_PREFIX
    diff = max_difference(onnx_file, prefix, epoch, pixels)
    print(f"\nmodel.onnx of the job vs plain MXNet: max abs diff {diff:.1e}")
    assert diff <= TOLERANCE


@pytest.mark.parametrize("engine", ENGINES)
def test_lst_job_learns_and_writes_the_builtin_artifacts(tiny_tree: Path, engine: str):
    use_engine(tiny_tree, engine)
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_engine(result.stdout, engine)
    accuracies = _validation_accuracies(result.stdout)
    assert len(accuracies) == 3 + 1  # each epoch's, then the saved model's
    assert max(accuracies) >= 0.8  # chance is 1/3
    for definition in METRIC_DEFINITIONS:  # every engine prints every line (top_k: if set)
        if "top_k" not in definition["Name"]:
            assert re.search(definition["Regex"], result.stdout), definition
    # A tuning job ranks the job by the last value its objective regex reads: the saved epoch's
    # (the params file's number counts epochs from 1), not the last epoch's.
    objective = next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == "validation:accuracy")
    (saved,) = artifacts.params_epochs(tiny_tree / "model")
    tuned = float(re.findall(objective, result.stdout)[-1])
    assert tuned == accuracies[saved - 1] == max(accuracies[:3]), accuracies
    files = artifacts.locate_model(tiny_tree / "model")
    assert files.classes == ["class_0", "class_1", "class_2"]
    assert files.image_shape == (3, 32, 32)
    assert len(artifacts.params_epochs(tiny_tree / "model")) == 1  # best model only
    saved = model_dir.open_model(tiny_tree / "model")
    assert saved.convention == InputConvention("raw", 3, "resize_crop", 36)
    block = model_dir.load_for_inference(saved, mx.cpu())
    probabilities = block(mx.nd.zeros((2, 3, 32, 32))).asnumpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert_onnx_matches_plain_mxnet(tiny_tree)
    assert (tiny_tree / "output" / "success").exists()
    data_dir = tiny_tree / "output" / "data"
    rows = list(csv.DictReader((data_dir / reports.METRICS_CSV).open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for picture in (reports.CURVES_PNG, reports.CONFUSION_PNG):
        assert (data_dir / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((data_dir / reports.CLASS_REPORT_JSON).read_text())
    assert [r["support"] for r in report] == [8, 8, 8]


def test_class_folders_without_validation_channel_are_split(tmp_path: Path, tiny_tree: Path):
    data = tiny_tree / "input" / "data"
    for channel in ("validation", "train_lst", "validation_lst"):
        shutil.rmtree(data / channel)
    set_hyperparameters(tiny_tree, validation_fraction="0.25")
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "holding out 24 of 96 training images" in result.stdout
    assert max(_validation_accuracies(result.stdout)) >= 0.8
    names, _ = artifacts.read_classes(tiny_tree / "model" / artifacts.CLASSES_FILE)
    assert names == ["class_0", "class_1", "class_2"]


@pytest.mark.parametrize("engine", ENGINES)
def test_recordio_channels(tmp_path: Path, tiny_tree: Path, engine: str):
    data = tiny_tree / "input" / "data"
    settings = records.PackSettings(36, False, (32, 32), 10**8)
    for channel in ("train", "validation"):
        entries = [
            Entry(int(i), (float(lbl),), rel)
            for i, lbl, rel in (
                line.split("\t")
                for line in (data / f"{channel}_lst" / f"{channel}.lst").read_text().splitlines()
            )
        ]
        packed = records.pack(
            entries,
            data / channel,
            name=channel,
            settings=settings,
            cache_dir=tmp_path / "pack",
            workers=2,
            max_bad=0.0,
        )
        shutil.rmtree(data / channel)
        shutil.rmtree(data / f"{channel}_lst")
        (data / channel).mkdir()
        shutil.copy(packed.rec, data / channel / f"{channel}.rec")
        shutil.copy(packed.idx, data / channel / f"{channel}.idx")
    set_hyperparameters(tiny_tree, resize="36", training_engine=engine)
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert_engine(result.stdout, engine)
    assert max(_validation_accuracies(result.stdout)) >= 0.8


@pytest.mark.parametrize("engine", ENGINES)
def test_multi_label_with_weighted_loss(tmp_path: Path, tiny_tree: Path, engine: str):
    data = tiny_tree / "input" / "data"
    for channel in ("train", "validation"):
        lines = (data / f"{channel}_lst" / f"{channel}.lst").read_text().splitlines()
        rows = []
        for line in lines:
            index, label, rel = line.split("\t")
            hot = ["0"] * 3
            hot[int(float(label))] = "1"
            rows.append("\t".join([index, *hot, rel]))
        (data / f"{channel}_lst" / f"{channel}.lst").write_text("\n".join(rows) + "\n")
    set_hyperparameters(tiny_tree, multi_label="1", use_weighted_loss="1", training_engine=engine)
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert_engine(result.stdout, engine)
    assert max(_validation_accuracies(result.stdout)) >= 0.8  # mean per-class accuracy
    assert artifacts.locate_model(tiny_tree / "model").multi_label
    assert_onnx_matches_plain_mxnet(tiny_tree)
    # The report page: all but the single-label sections (calibration, activation maps).
    out = tiny_tree / "output" / "data"
    assert json.loads((out / "audit.json").read_text())["class_counts"] == {
        str(k): 32 for k in range(3)
    }
    page = (out / "report.html").read_text()
    for section in ("<h2>Data</h2>", "Class counts", "Hyperparameters", "Learning curves"):
        assert section in page
    assert "Per class" in page
    assert "Calibration" not in page and "activation map" not in page


@pytest.mark.parametrize("engine", ENGINES)
def test_checkpoint_frequency_keeps_every_nth_model(tiny_tree: Path, engine: str):
    set_hyperparameters(tiny_tree, epochs="4", checkpoint_frequency="2", training_engine=engine)
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert_engine(result.stdout, engine)
    assert artifacts.params_epochs(tiny_tree / "model") == [2, 4]
    exported = onnx.load(str(tiny_tree / "model" / artifacts.ONNX_FILE))  # the final model's
    source = {p.key: p.value for p in exported.metadata_props}[onnx_format.META_SOURCE]
    assert source == artifacts.params_file(4)


def test_pretrained_channel_initialises_all_but_the_head(tmp_path: Path, tiny_tree: Path):
    backbone = model.build_backbone(18, classes=1000)
    backbone.initialize(mx.init.Xavier())
    backbone(mx.nd.zeros((1, 3, 32, 32)))
    channel = tiny_tree / "input" / "data" / "pretrained"
    channel.mkdir()
    backbone.save_parameters(str(channel / "resnet18_v1.params"))
    set_hyperparameters(tiny_tree, num_layers="18", use_pretrained_model="1", epochs="1")
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Using pretrained weights from the pretrained channel" in result.stdout
    assert "Using pretrained model for initializing weights and transfer learning." in result.stdout


def test_pretrained_weights_from_the_baked_cache(tmp_path: Path, tiny_tree: Path, monkeypatch):
    cache = tmp_path / "zoo"
    cache.mkdir()
    backbone = model.build_backbone(18, classes=1000)
    backbone.initialize(mx.init.Xavier())
    backbone(mx.nd.zeros((1, 3, 32, 32)))
    backbone.save_parameters(str(cache / "resnet18_v1-a0666292.params"))
    monkeypatch.setenv("IC_MODEL_ZOO_DIR", str(cache))
    set_hyperparameters(tiny_tree, num_layers="18", use_pretrained_model="1", epochs="1")
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "from the model-zoo cache" in result.stdout


def test_torchvision_resnet50_weights_train_a_v1b_network_that_exports_and_reloads(
    tmp_path: Path, tiny_tree: Path
):
    from safetensors.numpy import save_file

    from tests.fixtures.seeded_resnet import expected, seeded_state
    from train.weights import store

    case = expected()["seeded"]["50"]
    save_file(seeded_state(case["manifest"], case["seed"]), str(tmp_path / "r50.safetensors"))
    channel = tiny_tree / "input" / "data" / "pretrained"
    _, name = store.convert_file(tmp_path / "r50.safetensors", 50, channel)
    assert name == "resnet50_v1b"
    set_hyperparameters(tiny_tree, num_layers="50", use_pretrained_model="1", epochs="1")
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "(network variant v1b)" in result.stdout
    assert metadata.read(tiny_tree / "model").network_variant == "v1b"
    images = mx.nd.random.uniform(0, 255, shape=(2, 3, 32, 32))
    saved = model_dir.open_model(tiny_tree / "model")
    served = model_dir.load_for_inference(saved, mx.cpu())(images).asnumpy()
    seed = model_dir.seed_network(tiny_tree / "model", 3, (3, 32, 32))
    assert seed.network_variant == "v1b"
    again = mx.nd.softmax(seed(images)).asnumpy()
    np.testing.assert_allclose(again, served, atol=1e-5)


def test_incremental_training_keeps_or_replaces_the_head(tmp_path: Path, tiny_tree: Path):
    first = run_training(tiny_tree)
    assert first.returncode == 0, first.stdout[-3000:]
    best_first = max(_validation_accuracies(first.stdout))
    seed = tiny_tree / "input" / "data" / "model"
    shutil.copytree(tiny_tree / "model", seed)
    for leftover in ("model", "checkpoints", "output"):
        shutil.rmtree(tiny_tree / leftover)
    set_hyperparameters(tiny_tree, epochs="1", learning_rate="0.001")
    again = run_training(tiny_tree)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "(classifier kept)" in again.stdout
    assert _validation_accuracies(again.stdout)[0] >= best_first - 0.1

    # A fourth class: the built-in cannot add classes; here the head is re-initialised.
    for leftover in ("model", "checkpoints", "output"):
        shutil.rmtree(tiny_tree / leftover)
    data = tiny_tree / "input" / "data"
    extra = make_class_folders(tmp_path / "extra", 4, 24, seed=5)
    for item in extra:
        if item.label == 3:
            (data / "train" / item.relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "extra" / item.relpath, data / "train" / item.relpath)
    lines = (data / "train_lst" / "train.lst").read_text().splitlines()
    new = [f"{1000 + i.index}\t3\t{i.relpath}" for i in extra if i.label == 3]
    (data / "train_lst" / "train.lst").write_text("\n".join(lines + new) + "\n")
    set_hyperparameters(tiny_tree, num_classes="4", epochs="1")
    grown = run_training(tiny_tree)
    assert grown.returncode == 0, grown.stdout[-3000:]
    assert "num_classes 3 -> 4, classifier re-initialised" in grown.stdout
    assert artifacts.locate_model(tiny_tree / "model").classes is not None


def test_images_written_in_odd_formats_train(tmp_path: Path, tiny_tree: Path):
    """A real data set mixes formats; every image here is usable after conversion."""
    import random

    import cv2

    data = tiny_tree / "input" / "data" / "train"
    rng = random.Random(3)
    rgb = make_image(0, rng, (48, 48))
    cv2.imwrite(str(data / "class_0" / "gray.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(data / "class_0" / "deep.png"), rgb.astype(np.uint16) * 257)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    cv2.imwrite(str(data / "class_0" / "alpha.png"), rgba)
    lst = tiny_tree / "input" / "data" / "train_lst" / "train.lst"
    extra = [
        Entry(900 + i, (0.0,), f"class_0/{n}")
        for i, n in enumerate(["gray.png", "deep.png", "alpha.png"])
    ]
    lines = lst.read_text().splitlines()
    lst.write_text("\n".join(lines + [f"{e.index}\t0\t{e.relpath}" for e in extra]) + "\n")
    set_hyperparameters(tiny_tree, epochs="1")
    result = run_training(tiny_tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Skipped" not in result.stdout
    assert "Done creating record files for train: 99 images" in result.stdout
