"""The data audit on generated data: planted copies, near-copies, label conflicts and a rare
class are each found; a clean set of similar size gives no warning."""

from __future__ import annotations

import pytest

from tests.insight_data import PlantedSet, clean_set, datagen_set, planted_set
from train.insight.audit import Part, audit


def _run(data: PlantedSet, classes: int) -> dict[str, dict]:
    train = Part(
        list(range(len(data.train))), [(float(v),) for v in data.train_labels], data.train, []
    )
    validation = Part(
        list(range(len(data.validation))),
        [(float(v),) for v in data.validation_labels],
        data.validation,
        [],
    )
    report = audit(train, validation, [f"c{k}" for k in range(classes)], (3, 32, 32))
    return {f["kind"]: f for f in report["findings"]}


@pytest.fixture(scope="module")
def planted() -> tuple[PlantedSet, dict[str, dict]]:
    data = planted_set()
    return data, _run(data, 6)


def test_audit_finds_validation_copies_of_training_images(planted) -> None:
    data, found = planted
    assert set(data.copies) <= set(found["leakage_copy"]["validation_records"])


def test_audit_finds_reencoded_resized_and_cropped_near_copies(planted) -> None:
    data, found = planted
    flagged = set(found["leakage_copy"]["validation_records"]) | set(
        found["leakage_near_copy"]["validation_records"]
    )
    assert set(data.near_copies) <= flagged
    assert flagged <= set(data.copies) | set(data.near_copies)  # and nothing else


def test_audit_finds_label_conflicts_and_only_them(planted) -> None:
    data, found = planted
    assert set(found["label_conflict"]["train_records"]) == set(data.conflicts)


def test_audit_finds_the_rare_class_and_the_imbalance(planted) -> None:
    data, found = planted
    assert found["rare_classes"]["classes"] == [f"c{data.rare_class}"]
    assert "imbalance" in found


def test_audit_finds_nothing_in_a_clean_set() -> None:
    assert list(_run(clean_set(), 5)) == []


def test_audit_finds_nothing_in_tests_datagen_pictures() -> None:
    # One colour and stripe pattern per class: images of a class differ only by noise,
    # brightness and size, the hardest clean set for a near-copy test.
    found = _run(datagen_set(), 4)
    assert list(found) == []


def test_audit_flags_images_much_smaller_than_image_shape() -> None:
    data = clean_set(per_class=4)
    train = Part([0, 1], [(0.0,), (0.0,)], data.train[:2], [])
    validation = Part([0], [(0.0,)], data.validation[:1], [("bad.jpg", "not an image")])
    found = {f["kind"]: f for f in audit(train, validation, ["a"], (3, 96, 96))["findings"]}
    assert found["small_images"]["count"] == 3  # 40-pixel records for a 96-pixel input
    assert found["unusable_images"]["skipped"] == [["bad.jpg", "not an image"]]
