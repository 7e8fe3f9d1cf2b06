"""The data audit's cost against the first epoch of a real training job on tens of thousands of
small images (issue 17: the audit must stay under 10% of the first epoch).

Generates ``--images`` small JPEGs with ``tests/datagen.py`` (40-72 px, one colour and stripe
pattern per class: the hardest clean data for the audit's near-copy search, since a class's
images differ only by noise), four fifths for training and one fifth for validation, as a
SageMaker ``/opt/ml`` tree with ``.lst`` channels; runs one ``python -m train`` on it with TINY
hyperparameters (ResNet-20 at 32 px, resize 36, one epoch); reads the job's own log lines,
``Data audit: N images in S s`` and ``Epoch[0] Time cost=T``; prints both, their ratio and the
audit's findings (none expected) and writes them to ``benchmarks/results/audit.json``.

    python benchmarks/bench_audit.py                  # 50,000 images: ~10 minutes on 2 cores
    python benchmarks/bench_audit.py --images 5000    # a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.datagen import make_sagemaker_tree  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "audit.json"
TINY = {
    "num_layers": "20",
    "image_shape": "3,32,32",
    "resize": "36",
    "epochs": "1",
    "mini_batch_size": "128",
    "learning_rate": "0.05",
}
AUDIT_LINE = re.compile(r"Data audit: ([\d,]+) images in ([\d.]+) s")
EPOCH_LINE = re.compile(r"Epoch\[0\] Time cost=([\d.]+)")


def run(images: int, classes: int, keep: Path | None) -> dict:
    """Generate the data, train one epoch, and return the figures from the job's log."""
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as scratch:
        base = keep or Path(scratch) / "opt_ml"
        start = time.perf_counter()
        per_class = images // classes
        make_sagemaker_tree(
            base,
            num_classes=classes,
            train_per_class=per_class * 4 // 5,
            val_per_class=per_class - per_class * 4 // 5,
            hyperparameters=TINY,
        )
        generated = time.perf_counter() - start
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONUNBUFFERED": "1"}
        start = time.perf_counter()
        job = subprocess.run(
            [sys.executable, "-m", "train"], cwd=REPO, env=env, text=True, capture_output=True
        )
        wall = time.perf_counter() - start
        log = job.stdout + job.stderr
        audit, epoch = AUDIT_LINE.search(log), EPOCH_LINE.search(log)
        if job.returncode != 0 or not audit or not epoch:
            raise SystemExit(f"the job failed or logged no audit/epoch line:\n{log[-4000:]}")
        report = json.loads((base / "output" / "data" / "audit.json").read_text())
    audited, seconds, epoch_s = int(audit[1].replace(",", "")), float(audit[2]), float(epoch[1])
    return {
        "images": audited,
        "audit_s": seconds,
        "audit_images_per_s": round(audited / seconds),
        "epoch_s": epoch_s,
        "audit_over_epoch": round(seconds / epoch_s, 4),
        "findings": [f["message"] for f in report["findings"]],
        "generate_s": round(generated, 1),
        "job_wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="build the tree here and keep it")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON")
    args = parser.parse_args()
    figures = run(args.images, args.classes, args.keep)
    print(
        f"audit: {figures['images']:,} images in {figures['audit_s']:.1f} s "
        f"({figures['audit_images_per_s']:,} images/s); first epoch: {figures['epoch_s']:.1f} s; "
        f"audit / epoch = {figures['audit_over_epoch']:.1%} (target < 10%)"
    )
    print(f"findings: {figures['findings'] or 'none'}")
    if not args.no_save:
        figures.update(
            date=dt.date.today().isoformat(),
            machine=f"{platform.machine()}, {os.cpu_count()} cores",
            hyperparameters=TINY,
        )
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
