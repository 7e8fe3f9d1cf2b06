"""What the job's MXNet side hands the PyTorch engine: one folder, no MXNet needed to read it.

- the initial network as this product's model files (``image-classification-symbol.json``,
  ``-0000.params``, ``model-shapes.json``, ``model-metadata.json``), written by the same export
  as every saved model: fresh, ImageNet, a seed model or a symbolic checkpoint, all alike;
- ``job.json``: the resolved hyperparameters, the packed data (paths, counts, classes), and the
  class weights of a weighted multi-label loss.

The PyTorch process trains from these alone, so it also runs where MXNet cannot be installed
(``benchmarks/gpu_check.py`` carries a bundle to such a machine).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train import artifacts, records
from train.config import TrainConfig, parse_hyperparameters
from train.data import DataSpec

JOB_FILE = "job.json"
INITIAL_EPOCH = 0  # the initial parameters' file: image-classification-0000.params


@dataclass(frozen=True)
class Bundle:
    """A bundle folder, read."""

    directory: Path
    cfg: TrainConfig
    spec: DataSpec
    pos_weight: np.ndarray | None
    streamed: bool = False  # Pipe mode: the engine reads the train channel's FIFOs itself

    @property
    def symbol(self) -> Path:
        return self.directory / artifacts.SYMBOL_FILE

    @property
    def params(self) -> Path:
        return self.directory / artifacts.params_file(INITIAL_EPOCH)


def _packed(packed: records.PackedSet) -> dict:
    return {"rec": str(packed.rec), "idx": str(packed.idx), "count": packed.count}


def _unpacked(doc: dict) -> records.PackedSet:
    return records.PackedSet(Path(doc["rec"]), Path(doc["idx"]), int(doc["count"]))


def write_job(
    directory: Path, cfg: TrainConfig, spec: DataSpec, pos_weight: np.ndarray | None
) -> None:
    """Write ``job.json`` beside the network files (already exported into ``directory``)."""
    doc = {
        "hyperparameters": cfg.to_hyperparameters(),
        "train": _packed(spec.train),
        "validation": _packed(spec.validation),
        "num_classes": spec.num_classes,
        "class_names": spec.class_names,
        "label_width": spec.label_width,
        "iter_resize": spec.iter_resize,
        "pos_weight": None if pos_weight is None else pos_weight.reshape(-1).tolist(),
        "train_streamed": spec.train_stream is not None,
    }
    artifacts.atomic_write_json(directory / JOB_FILE, doc)


def read(directory: Path) -> Bundle:
    """Read a bundle written by :func:`write_job` and the MXNet side's export."""
    doc = json.loads((directory / JOB_FILE).read_text())
    spec = DataSpec(
        train=_unpacked(doc["train"]),
        validation=_unpacked(doc["validation"]),
        num_classes=int(doc["num_classes"]),
        class_names=list(doc["class_names"]),
        label_width=int(doc["label_width"]),
        iter_resize=doc["iter_resize"],
    )
    weights = doc["pos_weight"]
    pos_weight = None if weights is None else np.asarray(weights, np.float32).reshape(1, -1)
    cfg = parse_hyperparameters(doc["hyperparameters"])
    return Bundle(directory, cfg, spec, pos_weight, bool(doc.get("train_streamed")))
