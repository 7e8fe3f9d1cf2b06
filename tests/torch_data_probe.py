"""Run in ``.venv-torch`` (no MXNet) by ``tests/unit/test_torch_data.py``: read a JSON list of
cases, run the PyTorch engine's loader on each, and save what it produced to one ``.npz``.

Usage: ``python -m tests.torch_data_probe cases.json out.npz``. Each case names a packed file,
the loader's settings and the epochs to run; ``fixed`` cases apply given draws to every record
instead (a transform checked for known random numbers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def _run(case: dict, out: dict[str, np.ndarray]) -> None:
    from train.engines.torch import augment, data
    from train.inputs import recordio

    name = case["name"]
    settings = augment.AugmentSettings(tuple(case["image_shape"]), **case.get("settings", {}))
    if "shards" in case:  # Pipe mode: one loader per shard, as PipeBatches opens them
        opener = data.shard_opener(settings, batch_size=4, label_width=1, workers=2)
        for k, rec in enumerate(case["shards"]):
            shard = SimpleNamespace(rec=Path(rec), idx=Path(rec).with_suffix(".idx"))
            out[f"{name}/{k}"] = np.concatenate([b.label.numpy() for b in opener(shard, 7)])
        return
    if "fixed" in case:
        draws = augment.Draws(**case["fixed"])
        images = []
        for record in recordio.read_file(Path(case["rec"])):
            image = augment.decode(recordio.unpack(record)[1], settings.image_shape[0])
            images.append(augment.augment(image, settings, draws))
        out[f"{name}/data"] = np.stack(images)
        return
    loader = data.RecordLoader(
        Path(case["rec"]),
        Path(case["idx"]) if case.get("idx") else None,
        settings,
        batch_size=case["batch_size"],
        label_width=case.get("label_width", 1),
        training=case["training"],
        seed=case.get("seed", 0),
        num_parts=case.get("num_parts", 1),
        part_index=case.get("part_index", 0),
        workers=case.get("workers", 2),
        processes=case.get("processes", False),
    )
    if case.get("gpu_path"):  # the GPU path's logic, run on the CPU
        from train.engines.torch import gpu

        loader = gpu.GpuBatches(loader, "cpu")
    for epoch in range(case.get("epochs", 1)):
        batches = list(loader.epoch(epoch))
        key = f"{name}/{epoch}"
        out[f"{key}/data"] = np.concatenate([b.data.numpy() for b in batches])
        out[f"{key}/label"] = np.concatenate([b.label.numpy() for b in batches])
        out[f"{key}/pad"] = np.array([b.pad for b in batches])
        base = getattr(loader, "loader", loader)
        draws = [d for slots in base.plan.batches(epoch) for d in base.maker.draws(slots)]
        out[f"{key}/draws"] = np.array(
            [[d.top, d.left, d.dh, d.ds, d.dl, d.mirror, d.angle, d.shear, d.ratio] for d in draws]
        )


def main(cases_path: str, out_path: str) -> None:
    sys.modules["mxnet"] = None  # the engine's process never has MXNet
    sys.modules["gluoncv"] = None
    out: dict[str, np.ndarray] = {}
    for case in json.loads(Path(cases_path).read_text()):
        _run(case, out)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
