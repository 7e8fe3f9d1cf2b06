"""The data audit before training: what makes a classifier look better than it is, or fail
quietly, found on the packed data of every input source.

Findings: validation images that are copies or near-copies of training images (leakage, the
validation accuracy is optimistic), training images that are copies under different labels
(conflicts), rare classes and imbalance, images skipped as unusable, images much smaller than
``image_shape``. Each warning goes to the log once, with its count and where to look; the full
lists go to ``audit.json``. The audit reads, never changes, the data, and never fails the job.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train import artifacts
from train.insight import matching, thumbs
from train.insight.packed import scan_packed

logger = logging.getLogger(__name__)

AUDIT_JSON = "audit.json"
RARE_COUNT = 10  # fewer training images than this: "a handful"
IMBALANCE_RATIO = 10.0  # largest class over smallest
SMALL_FRACTION = 0.5  # stored side under half of image_shape's: upsampled 2x or more
MAX_EXAMPLES = 20


@dataclass(frozen=True)
class Part:
    """One packed set as the audit sees it."""

    ids: list[int]  # record ids (the .lst index given to packing)
    labels: list[tuple[float, ...]]
    encoded: Sequence[bytes]  # a list, or images read from disk on demand
    skipped: list[tuple[str, str]]


def read_part(rec: Path, skipped: list[tuple[str, str]] | None = None) -> Part:
    """Every record of a packed file; the images stay on disk until the audit reads them."""
    ids, labels, encoded = scan_packed(rec)
    return Part(ids, labels, encoded, list(skipped or []))


class _Joined(Sequence[bytes]):
    """Two sequences of images as one, without reading them."""

    def __init__(self, first: Sequence[bytes], second: Sequence[bytes]) -> None:
        self._first, self._second = first, second

    def __len__(self) -> int:
        return len(self._first) + len(self._second)

    def __getitem__(self, k):  # noqa: ANN001, ANN204 - int or slice, as Sequence's
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = k + len(self) if k < 0 else k
        n = len(self._first)
        return self._first[k] if k < n else self._second[k - n]


def _finding(kind: str, level: str, count: int, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "level": level, "count": int(count), "message": message, **details}


def _examples(train: Part, validation: Part, n_train: int, i, j, is_copy) -> list[dict]:
    def where(k: int) -> dict[str, Any]:
        part, pos = (train, k) if k < n_train else (validation, k - n_train)
        return {
            "set": "train" if part is train else "validation",
            "record": int(pos),
            "id": int(part.ids[pos]),
            "label": list(part.labels[pos]),
        }

    return [
        {"a": where(a), "b": where(b), "copy": bool(c)}
        for a, b, c in list(zip(i, j, is_copy, strict=True))[:MAX_EXAMPLES]
    ]


def _pair_findings(
    train: Part, validation: Part, pairs: tuple[np.ndarray, ...], where: str
) -> list[dict]:
    n = len(train.ids)
    i, j, is_copy = pairs[:3]
    label_ids = {lab: k for k, lab in enumerate(dict.fromkeys(train.labels + validation.labels))}
    labels = np.array([label_ids[lab] for lab in train.labels + validation.labels])
    found = []
    across = (i < n) & (j >= n)
    for copies, noun in ((True, "copies"), (False, "near-copies")):
        sel = across & (is_copy == copies)
        leaked = np.unique(j[sel]) if copies else np.setdiff1d(j[sel], j[across & is_copy])
        if len(leaked):
            found.append(
                _finding(
                    "leakage_copy" if copies else "leakage_near_copy",
                    "warning",
                    len(leaked),
                    f"{len(leaked)} validation images are {noun} of training images: validation "
                    f"accuracy is optimistic (see {where})",
                    validation_records=(leaked - n).tolist(),
                    train_records=np.unique(i[sel]).tolist(),
                    examples=_examples(train, validation, n, i[sel], j[sel], is_copy[sel]),
                )
            )
    inside = j < n
    conflict = inside & (labels[i] != labels[j])
    if conflict.any():
        images = np.unique(np.r_[i[conflict], j[conflict]])
        found.append(
            _finding(
                "label_conflict",
                "warning",
                len(images),
                f"{len(images)} training images are copies or near-copies of training images with "
                f"another label: at least one label of each pair is wrong (see {where})",
                train_records=images.tolist(),
                examples=_examples(
                    train, validation, n, i[conflict], j[conflict], is_copy[conflict]
                ),
            )
        )
    same = inside & ~conflict & is_copy
    if same.any():
        found.append(
            _finding(
                "train_duplicates",
                "info",
                len(np.unique(j[same])),
                f"{len(np.unique(j[same]))} training images are copies of other training images "
                f"with the same label (they weigh double)",
                train_records=np.unique(np.r_[i[same], j[same]]).tolist(),
                examples=_examples(train, validation, n, i[same], j[same], is_copy[same]),
            )
        )
    return found


def _class_findings(labels: list[tuple[float, ...]], class_names: list[str], where: str):
    matrix = np.asarray(labels, dtype=np.float64)
    if matrix.shape[1] == 1:
        counts = np.bincount(matrix[:, 0].astype(np.int64), minlength=len(class_names))
    else:
        counts = (matrix > 0.5).sum(axis=0)
    counts = counts[: len(class_names)]
    found = []
    rare = [k for k, c in enumerate(counts) if c < RARE_COUNT]
    if rare:
        named = ", ".join(f"{class_names[k]} ({counts[k]})" for k in rare[:10])
        found.append(
            _finding(
                "rare_classes",
                "warning",
                len(rare),
                f"{len(rare)} classes have fewer than {RARE_COUNT} training images: {named}; their "
                f"scores are unreliable (see {where})",
                classes=[class_names[k] for k in rare],
            )
        )
    if counts.min() > 0 and counts.max() / counts.min() > IMBALANCE_RATIO:
        found.append(
            _finding(
                "imbalance",
                "warning",
                int(counts.max() / counts.min()),
                f"classes are imbalanced: the largest has {counts.max()} training images, the "
                f"smallest {counts.min()} ({counts.max() / counts.min():.0f}x); consider "
                f"use_weighted_loss or more data (see {where})",
            )
        )
    return counts, found


def audit(
    train: Part,
    validation: Part,
    class_names: list[str],
    image_shape: tuple[int, int, int],
    *,
    workers: int = 1,
    where: str = AUDIT_JSON,
) -> dict[str, Any]:
    """Audit two packed sets; returns the report :func:`run` writes (plain JSON types)."""
    start = time.perf_counter()
    encoded = _Joined(train.encoded, validation.encoded)
    factor = thumbs.decode_factor(min(image_shape[1:]))
    points, sizes, ok, digests = thumbs.layouts(encoded, factor, workers)
    pairs = matching.matching_pairs(encoded, (points, ok, digests), factor, workers)
    findings = _pair_findings(train, validation, pairs, where)
    counts, class_found = _class_findings(train.labels, class_names, where)
    findings += class_found
    skipped = train.skipped + validation.skipped
    if skipped or not ok.all():
        findings.append(
            _finding(
                "unusable_images",
                "info",
                len(skipped) + int((~ok).sum()),
                f"{len(skipped)} images were skipped while packing and {int((~ok).sum())} packed "
                f"images do not decode",
                skipped=[list(s) for s in skipped[:MAX_EXAMPLES]],
            )
        )
    limit = np.array(image_shape[1:]) * SMALL_FRACTION
    small = np.flatnonzero(ok & ((sizes < limit).any(axis=1)))
    if len(small):
        findings.append(
            _finding(
                "small_images",
                "warning",
                len(small),
                f"{len(small)} images are less than half of image_shape {image_shape[1]}x"
                f"{image_shape[2]}: they are upsampled and blurred (see {where})",
                records=small[:MAX_EXAMPLES].tolist(),
            )
        )
    return {
        "train_images": len(train.ids),
        "validation_images": len(validation.ids),
        "crowded_images": pairs[3],
        "class_counts": {name: int(c) for name, c in zip(class_names, counts, strict=False)},
        "thresholds": {
            **matching.THRESHOLDS,
            "rare_class": f"< {RARE_COUNT} training images",
            "imbalance": f"largest / smallest class > {IMBALANCE_RATIO:g}",
            "small_image": f"a side under {SMALL_FRACTION:g} x image_shape",
        },
        "findings": findings,
        "seconds": round(time.perf_counter() - start, 3),
    }


def run(spec: Any, cfg: Any, output_dir: Path) -> dict[str, Any] | None:
    """Audit a job's packed data, log one line per finding and write ``audit.json``.

    Never raises: the audit is advice, a failure in it is logged and the job goes on.

    Args:
        spec: the job's ``train.data.DataSpec`` (its ``train`` / ``validation`` packed sets).
        cfg: the job's ``TrainConfig`` (``image_shape``, ``preprocess_threads``).
        output_dir: ``output/data``.
    """
    try:
        start = time.perf_counter()
        if spec.train_stream is not None:
            logger.info("Data audit skipped: Pipe mode streams the training set")
            return None
        train = read_part(spec.train.rec, spec.train.skipped)
        validation = read_part(spec.validation.rec, spec.validation.skipped)
        where = str(output_dir / AUDIT_JSON)
        workers = cfg.preprocess_threads or os.cpu_count() or 1
        report = audit(
            train, validation, spec.class_names, cfg.image_shape, workers=workers, where=where
        )
        report["seconds"] = round(time.perf_counter() - start, 3)
        output_dir.mkdir(parents=True, exist_ok=True)
        artifacts.atomic_write_json(output_dir / AUDIT_JSON, report)
        for finding in report["findings"]:
            (logger.warning if finding["level"] == "warning" else logger.info)(finding["message"])
        images = len(train.ids) + len(validation.ids)
        logger.info(
            "Data audit: %s images in %.1f s (%s images/s), %d findings; see %s",
            f"{images:,}",
            report["seconds"],
            f"{images / max(report['seconds'], 1e-6):,.0f}",
            len(report["findings"]),
            where,
        )
        return report
    except Exception as exc:  # noqa: BLE001 - advice only: never fail the job
        logger.warning(
            "Data audit failed (training goes on): %s: %s", type(exc).__name__, exc, exc_info=True
        )
        return None
