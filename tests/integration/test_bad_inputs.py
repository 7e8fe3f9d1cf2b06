"""Bad input gets a clear error, and nothing is lost (issue 2): each case through main.run().

Every failing case must exit 1 (the user's mistake), say what is wrong in the first line of
output/failure (what SageMaker shows), and leave no model behind. Tolerated problems (a few
unreadable files, unusual image formats, a wrong num_training_samples) must train.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mxnet as mx
import pytest

from tests.datagen import make_sagemaker_tree
from train import records

pytestmark = pytest.mark.integration

# One epoch of a CIFAR ResNet-20 on 32x32 crops: a few seconds on two CPU cores.
TINY = {
    "num_layers": "20",
    "image_shape": "3,32,32",
    "resize": "36",
    "epochs": "1",
    "mini_batch_size": "8",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Three classes, 24 training and 8 validation images each, in the four .lst channels."""
    return make_sagemaker_tree(
        tmp_path / "opt_ml", train_per_class=24, val_per_class=8, hyperparameters=TINY
    )


def _data(base: Path) -> Path:
    return base / "input" / "data"


def _set_hyperparameters(base: Path, **changes: str | None) -> None:
    path = base / "input" / "config" / "hyperparameters.json"
    hps = json.loads(path.read_text())
    hps.update(changes)
    path.write_text(json.dumps({k: v for k, v in hps.items() if v is not None}))


def _append_lst_line(base: Path, line: str, channel: str = "train") -> int:
    """Append a line to the channel's .lst; returns its line number."""
    path = _data(base) / f"{channel}_lst" / f"{channel}.lst"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, line]) + "\n")
    return len(lines) + 1


def _replace_images(base: Path, files: dict[str, bytes]) -> list[str]:
    """Overwrite the first training images of the list with ``files`` (keeping each name's
    extension, and the .lst pointing at it); returns the new relative paths."""
    lst_path = _data(base) / "train_lst" / "train.lst"
    lines = lst_path.read_text().splitlines()
    replaced = []
    for i, (name, data) in enumerate(files.items()):
        index, label, relpath = lines[i].split("\t")
        (_data(base) / "train" / relpath).unlink()
        new_rel = f"{Path(relpath).parent.as_posix()}/{name}"
        (_data(base) / "train" / new_rel).write_bytes(data)
        lines[i] = f"{index}\t{label}\t{new_rel}"
        replaced.append(new_rel)
    lst_path.write_text("\n".join(lines) + "\n")
    return replaced


def _assert_client_failure(result, *fragments: str) -> str:
    """Exit 1, every fragment in the first line of output/failure (within its first 1,024
    characters), no model, no success file; returns that line."""
    assert result.code == 1, result.failure
    first_line = result.failure.splitlines()[0]
    assert first_line.startswith("Customer Error: ")
    for fragment in fragments:  # within what SageMaker shows of the failure reason
        assert fragment in first_line[:1024], first_line
    model_dir = result.base / "model"
    assert not model_dir.exists() or not any(model_dir.iterdir()), list(model_dir.iterdir())
    assert not (result.base / "output" / "success").exists()
    return first_line


def _assert_trained(result) -> dict[str, str]:
    """Exit 0, a complete model; returns the model's resolved hyperparameters."""
    assert result.code == 0, result.failure
    model_dir = result.base / "model"
    names = {p.name for p in model_dir.iterdir()}
    assert {"image-classification-symbol.json", "image-classification-0001.params"} <= names
    assert {"model-shapes.json", "classes.json", "hyperparameters.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    return json.loads((model_dir / "hyperparameters.json").read_text())


# --- .lst problems: refused with file and line, before any image is read ----------------------


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("9999\t1", "expected 3 tab-separated columns (index, label, path), found 2"),
        ("9999\t1\t0\tclass_1/img_0000.jpg", "found 4"),
        ("9999\tcat\tclass_1/img_0000.jpg", "label 'cat' is not a number"),
        ("9999\t3\tclass_1/img_0000.jpg", "label 3 is not below num_classes=3"),
        ("0\t1\tclass_1/img_0000.jpg", "index 0 already used on line 1"),
        ("9999\t0\t../../etc/passwd", "path '../../etc/passwd' leaves the channel root"),
        ("9999\t0\t/etc/passwd", "path '/etc/passwd' leaves the channel root"),
    ],
    ids=["2-columns", "4-columns", "non-numeric", "label>=num_classes", "dup-index", "..", "abs"],
)
def test_bad_lst_lines_are_refused_with_file_and_line(tree, run_job, line, fragment):
    number = _append_lst_line(tree, line)
    result = run_job(tree)
    _assert_client_failure(result, f"train.lst:{number}: ", fragment)
    assert not (tree / "scratch").exists()  # refused before packing any image


def test_validation_label_beyond_the_inferred_classes_is_refused(tree, run_job):
    _set_hyperparameters(tree, num_classes=None)
    _append_lst_line(tree, "9999\t5.000000\tclass_0/img_0000.jpg", channel="validation")
    result = run_job(tree)
    _assert_client_failure(result, "validation list has label 5", "num_classes=3")


def test_path_that_does_not_exist_is_named(tree, run_job):
    _append_lst_line(tree, "9999\t0\tclass_0/no_such_image.jpg")
    result = run_job(tree)
    _assert_client_failure(
        result, "1 of 73 train images", "class_0/no_such_image.jpg (file not found)"
    )


# --- unusable image files: skipped and counted, fatal over the threshold ------------------------


def test_broken_files_over_the_threshold_fail_naming_them(tree, run_job, broken_images):
    names = _replace_images(tree, broken_images)
    result = run_job(tree)
    first = _assert_client_failure(result, "4 of 72 train images", "max_bad_image_fraction=0.01")
    for name in names:
        assert name in first
    assert "empty file" in first and "truncated JPEG" in first and "truncated PNG" in first


def test_broken_files_under_the_threshold_are_skipped_and_logged(tree, run_job, broken_images):
    _set_hyperparameters(tree, max_bad_image_fraction="0.1")
    names = _replace_images(tree, broken_images)
    result = run_job(tree)
    hyperparameters = _assert_trained(result)
    assert hyperparameters["num_training_samples"] == "68"
    assert "Skipped 4 of 72 train images that cannot be used" in result.log
    for name in names:
        assert name in result.log


def test_image_bomb_is_refused_by_size(tree, run_job, bomb_png):
    (name,) = _replace_images(tree, {"bomb.png": bomb_png})
    result = run_job(tree)
    _assert_client_failure(result, f"{name} (image too large")


def test_image_bomb_is_skipped_when_tolerated(tree, run_job, bomb_png):
    _set_hyperparameters(tree, max_bad_image_fraction="0.05")
    (name,) = _replace_images(tree, {"bomb.png": bomb_png})
    result = run_job(tree)
    assert _assert_trained(result)["num_training_samples"] == "71"
    assert name in result.log and "too large" in result.log


def test_unusual_image_formats_are_converted_and_train(tree, run_job, unusual_images):
    names = _replace_images(tree, unusual_images)
    result = run_job(tree)
    assert _assert_trained(result)["num_training_samples"] == "72"
    assert "Skipped" not in result.log
    assert all(Path(n).suffix in (".png", ".jpg") for n in names)


# --- channels and counts -----------------------------------------------------------------------


def test_fewer_images_than_mini_batch_size(tree, run_job):
    _set_hyperparameters(tree, mini_batch_size="100")
    result = run_job(tree)
    _assert_client_failure(result, "72 usable images, fewer than mini_batch_size=100")


def test_empty_train_channel(tree, run_job):
    shutil.rmtree(_data(tree) / "train")
    (_data(tree) / "train").mkdir()
    result = run_job(tree)
    _assert_client_failure(result, "the 'train' channel", "is empty")


def test_empty_lst_channel(tree, run_job):
    (_data(tree) / "validation_lst" / "validation.lst").unlink()
    result = run_job(tree)
    _assert_client_failure(result, "the 'validation_lst' channel", "holds no .lst file")


def test_empty_lst_file(tree, run_job):
    (_data(tree) / "train_lst" / "train.lst").write_text("")
    result = run_job(tree)
    _assert_client_failure(result, "train.lst has no entries")


def test_missing_train_channel(tree, run_job):
    for channel in ("train", "train_lst"):
        shutil.rmtree(_data(tree) / channel)
    result = run_job(tree)
    _assert_client_failure(result, "the 'train' channel is missing")


def test_lst_channel_without_its_image_channel(tree, run_job):
    shutil.rmtree(_data(tree) / "train")
    result = run_job(tree)
    _assert_client_failure(result, "'train_lst' channel is given but the 'train' channel")


def test_missing_validation_lst_with_loose_validation_images(tree, run_job):
    """validation_lst is missing and the validation images are not in class folders: there is
    nothing to label them with."""
    shutil.rmtree(_data(tree) / "validation_lst")
    validation = _data(tree) / "validation"
    for folder in [d for d in validation.iterdir() if d.is_dir()]:
        for image in folder.iterdir():
            image.rename(validation / f"{folder.name}_{image.name}")
        folder.rmdir()
    result = run_job(tree)
    _assert_client_failure(result, "the 'validation' channel", "add the 'validation_lst' channel")


def test_missing_validation_lst_with_class_folders_uses_the_folder_names(tree, run_job):
    """validation_lst is missing but the validation images sit in class folders named like the
    training list's classes: they are labelled by folder name."""
    shutil.rmtree(_data(tree) / "validation_lst")
    result = run_job(tree)
    _assert_trained(result)
    classes = json.loads((tree / "model" / "classes.json").read_text())["classes"]
    assert classes == ["class_0", "class_1", "class_2"]
    assert "Found 24 images in 3 class folders in the validation channel" in result.log


def test_missing_validation_lst_labels_folders_by_the_training_lists_class_names(tree, run_job):
    """The training list need not number classes in folder order: validation folders are
    matched to the training classes by name, never by position."""
    lst_path = _data(tree) / "train_lst" / "train.lst"
    lines = [line.split("\t") for line in lst_path.read_text().splitlines()]
    lst_path.write_text("".join(f"{i}\t{2 - int(y)}\t{p}\n" for i, y, p in lines))
    shutil.rmtree(_data(tree) / "validation_lst")
    result = run_job(tree)
    _assert_trained(result)
    classes = json.loads((tree / "model" / "classes.json").read_text())["classes"]
    assert classes == ["class_2", "class_1", "class_0"]
    (packed,) = (tree / "scratch" / "records").glob("validation-*/data.rec")
    labels = records.read_labels(packed).reshape(-1)  # records in folder order: class_0 first
    assert labels.tolist() == [2.0] * 8 + [1.0] * 8 + [0.0] * 8


def test_missing_validation_lst_with_unrelated_class_folders(tree, run_job):
    shutil.rmtree(_data(tree) / "validation_lst")
    (_data(tree) / "validation" / "class_2").rename(_data(tree) / "validation" / "zebra")
    result = run_job(tree)
    _assert_client_failure(result, "validation_lst", "zebra")


@pytest.mark.parametrize(
    ("filename", "text", "fragment"),
    [
        ("classes.txt", "cat\ndog\n", "classes.txt lists 2 names for 3 classes"),
        ("classes.json", '["cat", "dog"', "classes.json is not valid JSON"),
        ("classes.json", '{"names": ["a", "b", "c"]}', "must hold a list of class names"),
    ],
)
def test_bad_class_name_file(tree, run_job, filename, text, fragment):
    (_data(tree) / "train_lst" / filename).write_text(text)
    result = run_job(tree)
    _assert_client_failure(result, fragment)


def test_class_name_file_names_the_classes(tree, run_job):
    (_data(tree) / "train_lst" / "classes.json").write_text('{"classes": ["cat", "dog", "eel"]}')
    _assert_trained(run_job(tree))
    classes = json.loads((tree / "model" / "classes.json").read_text())["classes"]
    assert classes == ["cat", "dog", "eel"]


def test_num_training_samples_that_disagrees_warns_and_uses_the_real_count(tree, run_job):
    _set_hyperparameters(tree, num_training_samples="1000")
    result = run_job(tree)
    hyperparameters = _assert_trained(result)
    assert "num_training_samples=1000 but the training set has 72 usable images" in result.log
    assert hyperparameters["num_training_samples"] == "72"


# --- hyperparameters: refused before any data is read ------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"num_epochs": "3"}, "unknown hyperparameter 'num_epochs'"),
        ({"mini_batch_size": "0"}, "mini_batch_size='0' is invalid"),
        pytest.param(
            {"precision_dtype": "float16"},
            "precision_dtype=float16 needs a GPU",
            marks=pytest.mark.skipif(mx.context.num_gpus() > 0, reason="a GPU is visible"),
        ),
    ],
)
def test_bad_hyperparameters_fail_before_any_data_is_read(tree, run_job, changes, fragment):
    _set_hyperparameters(tree, **changes)
    result = run_job(tree)
    _assert_client_failure(result, fragment)
    for untouched in ("scratch", "model", "checkpoints"):
        assert not (tree / untouched).exists(), untouched


# --- nothing is lost ---------------------------------------------------------------------------


def test_checkpoints_of_another_model_are_refused_and_kept(tree, run_job):
    """A job pointed at the checkpoint folder of a different model fails without touching it,
    and the model of the earlier run stays as it was."""
    _assert_trained(run_job(tree))
    saved = {p.name: p.read_bytes() for p in (tree / "checkpoints").iterdir()}
    model = {p.name: p.read_bytes() for p in (tree / "model").iterdir()}
    _set_hyperparameters(tree, num_layers="32", epochs="2")
    result = run_job(tree)
    assert result.code == 1
    first = result.failure.splitlines()[0]
    assert "holds checkpoints of a different model" in first
    assert "'num_layers': 20" in first and "'num_layers': 32" in first
    assert {p.name: p.read_bytes() for p in (tree / "checkpoints").iterdir()} == saved
    assert {p.name: p.read_bytes() for p in (tree / "model").iterdir()} == model
