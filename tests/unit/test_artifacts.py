"""The model-dir contract: atomic writes and locating a saved model."""

from __future__ import annotations

import json

import pytest

from train import artifacts


def test_atomic_write_replaces_the_file_in_one_step(tmp_path):
    path = tmp_path / "sub" / "model.params"
    artifacts.atomic_write_bytes(path, b"old")
    artifacts.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in path.parent.iterdir()] == ["model.params"]


def test_failed_write_leaves_no_temp_file_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "image-classification-0001.params"
    path.write_bytes(b"complete")

    def crash_halfway(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        artifacts.atomic_write(path, crash_halfway)
    assert path.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_interrupted_write_of_a_new_file_leaves_nothing(tmp_path):
    def interrupted(tmp):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        artifacts.atomic_write(tmp_path / "new.json", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_json_is_readable_json(tmp_path):
    artifacts.atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, 2], "b": 1}


def test_params_file_names_use_four_digit_epochs(tmp_path):
    assert artifacts.params_file(3) == "image-classification-0003.params"
    for name in ["image-classification-0003.params", "image-classification-0010.params"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "image-classification-12.params").write_bytes(b"")
    (tmp_path / "other-0005.params").write_bytes(b"")
    assert artifacts.params_epochs(tmp_path) == [3, 10]
    assert artifacts.params_epochs(tmp_path / "absent") == []


def _model_dir(tmp_path, *, epochs=(1, 4), classes=True, hyperparameters=True):
    (tmp_path / artifacts.SYMBOL_FILE).write_text("{}")
    artifacts.atomic_write_json(
        tmp_path / artifacts.SHAPES_FILE, artifacts.shapes_document((3, 32, 48), 8)
    )
    for epoch in epochs:
        (tmp_path / artifacts.params_file(epoch)).write_bytes(b"")
    if classes:
        artifacts.atomic_write_json(
            tmp_path / artifacts.CLASSES_FILE, artifacts.classes_document(["cat", "dog"], True)
        )
    if hyperparameters:
        artifacts.atomic_write_json(
            tmp_path / artifacts.HYPERPARAMETERS_FILE, {"resize": "40", "epochs": "4"}
        )
    return tmp_path


def test_locate_model_reads_the_newest_params_and_metadata(tmp_path):
    files = artifacts.locate_model(_model_dir(tmp_path))
    assert files.params.name == "image-classification-0004.params"
    assert files.image_shape == (3, 32, 48)
    assert files.classes == ["cat", "dog"]
    assert files.multi_label is True


def test_locate_model_accepts_a_builtin_algorithm_model(tmp_path):
    files = artifacts.locate_model(_model_dir(tmp_path, classes=False, hyperparameters=False))
    assert (files.classes, files.multi_label) == (None, False)


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (artifacts.SYMBOL_FILE, artifacts.SYMBOL_FILE),
        (artifacts.SHAPES_FILE, artifacts.SHAPES_FILE),
        ("params", "image-classification-NNNN.params"),
    ],
)
def test_locate_model_names_each_missing_file(tmp_path, remove, named):
    model_dir = _model_dir(tmp_path, epochs=() if remove == "params" else (1,))
    if remove != "params":
        (model_dir / remove).unlink()
    with pytest.raises(artifacts.MissingModelFiles) as info:
        artifacts.locate_model(model_dir)
    reason = str(info.value).split("(expected")[0]
    assert f"is missing: {named}" in reason


def test_locate_model_on_an_empty_dir_lists_all_three(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        artifacts.locate_model(tmp_path)
    reason = str(info.value).split("(expected")[0]
    for name in (artifacts.SYMBOL_FILE, artifacts.SHAPES_FILE, "image-classification-NNNN"):
        assert name in reason


def test_atomic_writes_are_readable_by_other_users(tmp_path):
    target = tmp_path / "model" / "classes.json"
    artifacts.atomic_write_json(target, {"classes": ["a"]})
    assert target.stat().st_mode & 0o777 == 0o644


def test_atomic_write_syncs_the_data_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = artifacts.os.fsync, artifacts.os.replace

    def fsync(fd):
        events.append(("fsync", artifacts.os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "fsync", fsync)
    monkeypatch.setattr(artifacts.os, "replace", replace)
    path = tmp_path / "model.params"
    artifacts.atomic_write_bytes(path, b"weights")
    assert [kind for kind, _ in events] == ["fsync", "rename", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".model.params."))  # the temp file's data
    assert events[1][1] == str(path)
    assert events[2][1] == str(tmp_path)  # then the folder's entry
