"""The data audit against an independent reference, cleanlab's Datalab, on the planted set:
every image Datalab calls a (near-)duplicate, and every label issue it finds among
near-duplicates of another label, the audit finds too.

Datalab gets its own features, plain OpenCV 16x16 colour thumbnails, not the audit's. Its
label check on features (labels from the nearest neighbours' labels) also flags about half of
the planted set's other images, whose labels carry no visual signal by construction; those are
not label issues the audit could find before training, so only the ones among Datalab's own
near-duplicates are compared."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from cleanlab import Datalab

from tests.insight_data import PlantedSet, planted_set
from train.insight.audit import Part, audit


def _features(encoded: list[bytes]) -> np.ndarray:
    def one(data: bytes) -> np.ndarray:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA).ravel() / 255.0

    return np.array([one(data) for data in encoded], np.float32)


@pytest.fixture(scope="module")
def both() -> tuple[PlantedSet, dict, dict[str, dict]]:
    data = planted_set()
    labels = data.train_labels + data.validation_labels
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(
        features=_features(data.train + data.validation),
        issue_types={"near_duplicate": {}, "label": {}},
    )
    train = Part(
        list(range(len(data.train))), [(float(v),) for v in data.train_labels], data.train, []
    )
    validation = Part(
        list(range(len(data.validation))),
        [(float(v),) for v in data.validation_labels],
        data.validation,
        [],
    )
    report = audit(train, validation, [f"c{k}" for k in range(6)], (3, 32, 32))
    reference = {
        "near": lab.get_issues("near_duplicate"),
        "label": lab.get_issues("label"),
        "labels": labels,
    }
    return data, reference, {f["kind"]: f for f in report["findings"]}


def test_audit_finds_every_near_duplicate_datalab_finds(both) -> None:
    data, reference, found = both
    n = len(data.train)
    flagged = np.flatnonzero(reference["near"]["is_near_duplicate_issue"]).tolist()
    assert len(flagged) >= 2 * len(data.copies)  # the reference does find the planted copies
    ours = {
        ("train", k)
        for kind in ("leakage_copy", "leakage_near_copy", "label_conflict", "train_duplicates")
        for k in found.get(kind, {}).get("train_records", [])
    } | {
        ("validation", k)
        for kind in ("leakage_copy", "leakage_near_copy")
        for k in found.get(kind, {}).get("validation_records", [])
    }
    theirs = {("train", k) if k < n else ("validation", k - n) for k in flagged}
    assert theirs - ours == set()


def test_audit_finds_every_label_issue_datalab_finds_among_near_duplicates(both) -> None:
    data, reference, found = both
    labels, near = reference["labels"], reference["near"]
    issues = np.flatnonzero(reference["label"]["is_label_issue"])
    among = {
        int(k)
        for k in issues
        if k < len(data.train)
        and any(
            labels[m] != labels[k] and m < len(data.train) for m in near["near_duplicate_sets"][k]
        )
    }
    assert among  # the reference does see some of the planted conflicts
    assert among <= set(found["label_conflict"]["train_records"])
