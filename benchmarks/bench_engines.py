"""The two training engines on the same CPU job: ``training_engine=mxnet`` vs ``pytorch``.

One generated set (4 classes, 320 training and 80 validation JPEGs), ResNet-18 at 112 px
(resize 128), batch 32, 2 epochs: the same ``python -m train`` job run on each engine, in
alternating rounds (A, B, A, B, ...) so that load from other work on a shared machine hits both
alike. Each run starts from a fresh ``/opt/ml`` tree but shares the record cache
(``IC_SCRATCH_DIR``), which an unmeasured warm-up run of each engine fills: packing is the
MXNet side's work for both engines and is not what is compared.

Per run: the end-to-end wall time of the job (process start to exit: imports, network export,
the PyTorch engine's process start, training, validation, reports, ``model.onnx``) and the
images/s the job logged for each epoch (``Epoch[N] Train-samples_per_sec``; epoch 0 includes
warm-up, epoch 1 is the steady state). Prints the medians, and the PyTorch/MXNet ratios as the
median of each round's back-to-back pair (which cancels most of the load that drifts between
rounds), and writes them as JSON.

    .venv/bin/python benchmarks/bench_engines.py               # 3 rounds, ~5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_engines.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ENGINES = ("mxnet", "pytorch")
HYPERPARAMETERS = {
    "num_layers": "18",
    "image_shape": "3,112,112",
    "resize": "128",
    "epochs": "2",
    "mini_batch_size": "32",
    "learning_rate": "0.01",
}
SPEED = re.compile(r"Epoch\[(\d+)\] Train-samples_per_sec=([0-9.]+)")
VALIDATION = re.compile(r"Epoch\[\d+\] Validation-accuracy=([0-9.]+)")


def make_data(root: Path) -> Path:
    """The generated data set as a SageMaker tree (channels and config), made once."""
    from tests.datagen import make_sagemaker_tree

    return make_sagemaker_tree(
        root / "template",
        num_classes=4,
        train_per_class=80,
        val_per_class=20,
        hyperparameters=HYPERPARAMETERS,
    )


def run_job(template: Path, work: Path, scratch: Path, engine: str) -> dict:
    """One ``python -m train`` job on ``engine``: wall time, logged speeds, accuracies."""
    base = work / f"opt_ml-{engine}"
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(template / "input", base / "input")
    config = base / "input" / "config" / "hyperparameters.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "training_engine": engine}))
    env = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(base),
        "IC_SCRATCH_DIR": str(scratch),
        "PYTHONUNBUFFERED": "1",
    }
    start = time.perf_counter()
    job = subprocess.run(
        [sys.executable, "-m", "train"], cwd=REPO, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if job.returncode != 0:
        raise SystemExit(f"{engine} job failed:\n{job.stdout[-3000:]}\n{job.stderr[-3000:]}")
    if f"Training engine: {engine} (" not in job.stdout:
        raise SystemExit(f"the job did not train on {engine}:\n{job.stdout[-3000:]}")
    speeds = {int(epoch): float(value) for epoch, value in SPEED.findall(job.stdout)}
    accuracies = [float(v) for v in VALIDATION.findall(job.stdout)]
    return {"wall_s": wall, "speeds": speeds, "best_accuracy": max(accuracies)}


def median(runs: list[dict], key) -> float:
    return statistics.median(key(run) for run in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured runs of each engine")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "engines.json"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        work = Path(tmp)
        template, scratch = make_data(work), work / "scratch"
        for engine in ENGINES:  # warm-up: packs the records, warms the file cache
            run_job(template, work, scratch, engine)
        runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
        for number in range(args.rounds):
            order = ENGINES if number % 2 == 0 else ENGINES[::-1]
            for engine in order:
                run = run_job(template, work, scratch, engine)
                runs[engine].append(run)
                print(
                    f"round {number + 1} {engine:8s} wall {run['wall_s']:6.1f} s  images/s "
                    f"epoch0 {run['speeds'][0]:6.1f} epoch1 {run['speeds'][1]:6.1f}  "
                    f"best val acc {run['best_accuracy']:.3f}",
                    flush=True,
                )
    summary = {
        engine: {
            "wall_s": median(engine_runs, lambda r: r["wall_s"]),
            "epoch0_images_per_s": median(engine_runs, lambda r: r["speeds"][0]),
            "epoch1_images_per_s": median(engine_runs, lambda r: r["speeds"][1]),
        }
        for engine, engine_runs in runs.items()
    }
    pairs = list(zip(runs["mxnet"], runs["pytorch"], strict=True))  # back to back, one round
    ratios = {
        "wall_pytorch_over_mxnet": statistics.median(b["wall_s"] / a["wall_s"] for a, b in pairs),
        "epoch1_speed_pytorch_over_mxnet": statistics.median(
            b["speeds"][1] / a["speeds"][1] for a, b in pairs
        ),
        "per_round_wall": [b["wall_s"] / a["wall_s"] for a, b in pairs],
        "per_round_epoch1_speed": [b["speeds"][1] / a["speeds"][1] for a, b in pairs],
    }
    print(f"\nmedians over {args.rounds} rounds (ResNet-18, 112 px, 320 images, 2 epochs, CPU):")
    for engine, figures in summary.items():
        print(
            f"  {engine:8s} wall {figures['wall_s']:6.1f} s   images/s epoch0 "
            f"{figures['epoch0_images_per_s']:6.1f}  epoch1 {figures['epoch1_images_per_s']:6.1f}"
        )
    print(
        f"  PyTorch / MXNet, median of the rounds' paired ratios: wall time "
        f"x{ratios['wall_pytorch_over_mxnet']:.2f}, steady images/s "
        f"x{ratios['epoch1_speed_pytorch_over_mxnet']:.2f} (per round: "
        + ", ".join(f"{r:.2f}" for r in ratios["per_round_epoch1_speed"])
        + ")"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "hyperparameters": HYPERPARAMETERS,
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "runs": runs,
        "medians": summary,
        "ratios": ratios,
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
