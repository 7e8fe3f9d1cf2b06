"""``oic prepare``: im2rec-style lists from class folders, and too few images per class."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.cli import main
from tests.datagen import make_class_folders, write_jpeg


def _lines(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_prepare_splits_each_class_and_reports_counts(tmp_path: Path, capsys) -> None:
    data = tmp_path / "pets"
    make_class_folders(data, num_classes=3, per_class=10)
    assert main(["prepare", str(data), "--validation-fraction", "0.2", "--seed", "7"]) == 0
    train, validation = _lines(data / "train.lst"), _lines(data / "validation.lst")
    assert len(train) == 24 and len(validation) == 6
    # index<TAB>label<TAB>relative path, labels = sorted folder index (im2rec --list --recursive)
    for index, label, relpath in train + validation:
        assert int(index) >= 0
        assert int(float(label)) == int(relpath.split("/")[0].split("_")[1])
        assert (data / relpath).is_file()
    assert {r[2] for r in train}.isdisjoint({r[2] for r in validation})
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert ["0", "class_0", "8", "2"] in rows and ["total", "24", "6"] in rows
    assert '"classes": [\n    "class_0"' in (data / "classes.json").read_text()


def test_the_training_list_is_shuffled_so_every_host_part_has_every_class(tmp_path: Path) -> None:
    data = tmp_path / "pets"
    make_class_folders(data, num_classes=3, per_class=20)
    main(["prepare", str(data)])
    labels = [int(float(r[1])) for r in _lines(data / "train.lst")]
    half = len(labels) // 2
    assert set(labels[:half]) == set(labels[half:]) == {0, 1, 2}


def test_prepare_is_repeatable_with_a_seed(tmp_path: Path) -> None:
    data = tmp_path / "pets"
    make_class_folders(data, num_classes=2, per_class=10)
    main(["prepare", str(data), "--seed", "3"])
    first = (data / "validation.lst").read_text()
    main(["prepare", str(data), "--seed", "3"])
    assert (data / "validation.lst").read_text() == first
    main(["prepare", str(data), "--seed", "4"])
    assert (data / "validation.lst").read_text() != first


def test_prepare_fails_when_a_class_has_too_few_images(tmp_path: Path, capsys) -> None:
    data = tmp_path / "pets"
    make_class_folders(data, num_classes=2, per_class=6)
    (data / "lonely").mkdir()
    import random

    from tests.datagen import make_image

    write_jpeg(data / "lonely" / "only.jpg", make_image(0, random.Random(0)))
    assert main(["prepare", str(data)]) == 2
    err = capsys.readouterr().err
    assert "too few images" in err and "'lonely' (1)" in err and "at least 2" in err
    assert not (data / "train.lst").exists()


def test_prepare_minimum_per_class_is_configurable(tmp_path: Path, capsys) -> None:
    data = tmp_path / "pets"
    make_class_folders(data, num_classes=2, per_class=4)
    assert main(["prepare", str(data), "--min-per-class", "5"]) == 2
    assert "'class_0' (4), 'class_1' (4)" in capsys.readouterr().err


@pytest.mark.parametrize("folders", [0, 1])
def test_prepare_needs_two_classes(tmp_path: Path, capsys, folders: int) -> None:
    data = tmp_path / "pets"
    data.mkdir()
    if folders:
        make_class_folders(data, num_classes=1, per_class=4)
    assert main(["prepare", str(data)]) == 2
    assert "at least 2" in capsys.readouterr().err
