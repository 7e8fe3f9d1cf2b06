"""Pipe mode against File mode on the same RecordIO data: input pipeline and training jobs.

One generated data set (``bench_train.ensure_dataset``) is made into train and validation
``.rec`` files by MXNet's own ``tools/im2rec.py``. Two parts, each alternating its contenders
round by round so that load from other work on a shared machine hits both alike; each ratio is
the median of the paired (same-round) ratios:

1. **Input pipeline** (what bounds a GPU), in this process: File mode's ``train.data.record_iter``
   over the ``.rec`` file against Pipe mode's ``train.data.stream_iter`` reading the same bytes
   from a FIFO that a feeder thread writes (shuffle buffer, shards, ``ImageRecordIter``); one
   epoch each per round, images/sec of decoded, augmented batches.
2. **Training jobs**, each a real ``python -m train`` as the container runs it:
   ``file-rec`` (File mode, the ``.rec`` files in the channels: nothing to pack), ``pipe-rec``
   (Pipe mode: the same bytes streamed into ``train_<n>`` / ``validation_<n>`` FIFOs by feeder
   threads, ``tests/pipe_feeder.py``), and once ``file-lst`` (File mode from the JPEGs and
   ``.lst`` files: the job packs them first, in a fresh scratch folder so no cache hides it).
   Training images/sec = images trained / the epochs' ``Time cost`` (for Pipe mode this includes
   waiting for the stream); end-to-end images/sec = images trained / the job's wall time
   (start-up, packing, validation, model files).

    python benchmarks/bench_pipe.py            # ~25 minutes on 2 cores
    python benchmarks/bench_pipe.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
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

from benchmarks.bench_train import NUM_CLASSES, ensure_dataset, log  # noqa: E402
from tests.pipe_feeder import Feeder  # noqa: E402

TIME_COST = re.compile(r"Epoch\[(\d+)\] Time cost=([0-9.]+)")
PIPE_CHANNEL = {
    "ContentType": "application/x-recordio",
    "TrainingInputMode": "Pipe",
    "S3DistributionType": "FullyReplicated",
    "RecordWrapperType": "None",
}


def make_records(root: Path, lst_path: Path, out: Path, resize: int) -> dict[str, Path]:
    """train/validation ``.lst`` files (every 10th image validates) and their im2rec ``.rec``."""
    import mxnet as mx

    out.mkdir(parents=True, exist_ok=True)
    lines = lst_path.read_text().splitlines()
    parts = {"train": [ln for i, ln in enumerate(lines) if i % 10], "validation": lines[::10]}
    made = {}
    for name, part in parts.items():
        prefix = out / name
        made[f"{name}_lst"] = prefix.with_suffix(".lst")
        made[name] = prefix.with_suffix(".rec")
        if made[name].is_file():
            continue
        made[f"{name}_lst"].write_text("\n".join(part) + "\n")
        im2rec = Path(mx.__file__).parent / "tools" / "im2rec.py"
        command = [sys.executable, str(im2rec), str(prefix), str(root), "--resize", str(resize)]
        subprocess.run(command + ["--quality", "90"], check=True, capture_output=True)
    return made


def job_tree(base: Path, kind: str, made: dict, root: Path, hps: dict) -> dict:
    """A SageMaker tree for one contender; returns its channels' inputdataconfig."""
    data, config = base / "input" / "data", base / "input" / "config"
    config.mkdir(parents=True)
    channels: dict = {}
    for name in ("train", "validation"):
        if kind == "file-rec":
            (data / name).mkdir(parents=True)
            os.symlink(made[name], data / name / f"{name}.rec")
            os.symlink(made[name].with_suffix(".idx"), data / name / f"{name}.idx")
            channels[name] = {"ContentType": "application/x-recordio", "TrainingInputMode": "File"}
        elif kind == "file-lst":
            (data / f"{name}_lst").mkdir(parents=True)
            os.symlink(root, data / name)
            shutil.copy(made[f"{name}_lst"], data / f"{name}_lst" / f"{name}.lst")
            channels[name] = {"ContentType": "application/x-image", "TrainingInputMode": "File"}
        else:
            data.mkdir(parents=True, exist_ok=True)
            channels[name] = PIPE_CHANNEL
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    return channels


def run_job(kind: str, made: dict, root: Path, hps: dict, epochs: int, images: int) -> dict:
    """Run one contender's job; returns its timings."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        base = Path(tmp) / "opt_ml"
        job_tree(base, kind, made, root, hps)
        feeders = []
        if kind == "pipe-rec":
            for name in ("train", "validation"):
                payload = made[name].read_bytes()
                feeder = Feeder(base / "input" / "data", name, lambda _, p=payload: p, epochs)
                feeder.start()
                feeders.append(feeder)
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "IC_SCRATCH_DIR": f"{tmp}/scratch"}
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "train"], cwd=REPO, env=env, capture_output=True, text=True
        )
        wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    costs = [float(t) for _, t in TIME_COST.findall(done.stdout)]
    trained = images * epochs
    return {
        "wall_seconds": round(wall, 2),
        "epoch_seconds": costs,
        "train_images_per_sec": round(trained / sum(costs), 2),
        "end_to_end_images_per_sec": round(trained / wall, 2),
    }


def loader_rounds(made: dict, hps: dict, rounds: int, threads: int, repeat: int = 1) -> list[dict]:
    """Part 1: one epoch of each iterator per round, alternating which goes first. With
    ``repeat`` > 1 a Pipe pass carries the ``.rec`` that many times and File mode runs as many
    epochs: a larger epoch, over which Pipe mode's per-pass start-up weighs less."""
    from train import data, records
    from train.config import parse_hyperparameters
    from train.inputs import pipe_mode
    from train.inputs.channels import Channel
    from train.paths import Paths

    cfg = parse_hyperparameters(hps)
    rec = made["train"]
    packed = records.PackedSet(rec, rec.with_suffix(".idx"), int(hps["num_training_samples"]))
    payload = rec.read_bytes() * repeat
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        paths = Paths(Path(tmp))
        paths.data_dir.mkdir(parents=True)
        source = pipe_mode.source(paths, cfg, Channel("train", input_mode="Pipe"), lossless=False)
        spec = data.DataSpec(packed, packed, NUM_CLASSES, [], 1, cfg.resize, source)
        kwargs = dict(training=True, batch_size=cfg.mini_batch_size, threads=threads)
        file_iter = data.record_iter(packed, spec, cfg, **kwargs)
        pipe_iter = data.stream_iter(packed, spec, cfg, **kwargs)
        feeder = Feeder(paths.data_dir, "train", lambda _: payload, rounds)
        feeder.start()
        for number in range(rounds):
            order = ("file", "pipe") if number % 2 == 0 else ("pipe", "file")
            row = {}
            for kind in order:
                passes = repeat if kind == "file" else 1
                row[kind] = time_epoch(file_iter if kind == "file" else pipe_iter, passes)
            log(f"loader round {number + 1}/{rounds}: {row}")
            rows.append(row)
        feeder.join()
    return rows


def time_epoch(data_iter, passes: int = 1) -> float:
    """Images/sec of ``passes`` epochs of decoded, augmented batches."""
    start, images = time.monotonic(), 0
    for _ in range(passes):
        data_iter.reset()
        for batch in data_iter:
            batch.data[0].wait_to_read()
            images += batch.data[0].shape[0]
    return round(images / (time.monotonic() - start), 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--images", type=int, default=3000, help="generated JPEGs (10%% validate)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "bench")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="file-rec / pipe-rec job pairs")
    parser.add_argument("--loader-rounds", type=int, default=5, help="input pipeline pairs")
    parser.add_argument("--num-layers", type=int, default=18)
    parser.add_argument("--image-size", type=int, default=128, help="crop; resize = 256/224 x")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shuffle-buffer", type=int, default=1024, help="pipe_shuffle_buffer")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/pipe.json")
    parser.add_argument("--loader-only", action="store_true", help="part 1 only")
    parser.add_argument(
        "--loader-repeat", type=int, default=1, help="part 1: .rec copies per Pipe pass"
    )
    parser.add_argument("--quick", action="store_true", help="200 images, 1 epoch, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.epochs, args.rounds, args.loader_rounds = 200, 1, 1, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from train import devices

    devices.configure_cpu_threads()  # as `python -m train` does, before MXNet loads
    cores = os.cpu_count() or 1
    resize = round(args.image_size * 256 / 224)
    root, lst_path = ensure_dataset(args.cache_dir, args.images, args.seed, cores)
    made = make_records(root, lst_path, root.parent / f"im2rec-{resize}", resize)
    train_images = sum(1 for _ in made["train_lst"].open())
    hps = {
        "num_classes": str(NUM_CLASSES),
        "num_training_samples": str(train_images),
        "num_layers": str(args.num_layers),
        "image_shape": f"3,{args.image_size},{args.image_size}",
        "resize": str(resize),
        "augmentation_type": "crop",
        "epochs": str(args.epochs),
        "mini_batch_size": str(args.batch_size),
        "learning_rate": "0.01",
        "pipe_shuffle_buffer": str(args.shuffle_buffer),
    }
    results: dict = {
        "config": {**vars(args), "cache_dir": str(args.cache_dir), "output": str(args.output)},
        "train_images": train_images,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": cores,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "rounds": [],
    }
    results["loader"] = loader_rounds(made, hps, args.loader_rounds, cores, args.loader_repeat)
    if args.loader_only:
        args.rounds = 0
        results["config"]["rounds"] = 0
    for number in range(args.rounds):
        order = ("file-rec", "pipe-rec") if number % 2 == 0 else ("pipe-rec", "file-rec")
        row = {}
        for kind in order:
            log(f"round {number + 1}/{args.rounds}: {kind}")
            row[kind] = run_job(kind, made, root, hps, args.epochs, train_images)
        results["rounds"].append(row)
    if args.rounds:
        log("file-lst (packs the JPEGs once, then trains)")
        results["file_lst"] = run_job("file-lst", made, root, hps, args.epochs, train_images)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["summary"] = summarise(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_report(results)
    return 0


def summarise(results: dict) -> dict:
    rounds = results["rounds"]

    def median(kind: str, key: str) -> float:
        return round(statistics.median(r[kind][key] for r in rounds), 2)

    def ratio(key: str) -> float:
        return round(statistics.median(r["pipe-rec"][key] / r["file-rec"][key] for r in rounds), 3)

    loader = results["loader"]
    summary = {
        "loader_file_images_per_sec": statistics.median(r["file"] for r in loader),
        "loader_pipe_images_per_sec": statistics.median(r["pipe"] for r in loader),
        "loader_pipe_over_file": round(statistics.median(r["pipe"] / r["file"] for r in loader), 3),
    }
    if not rounds:
        return summary
    return {
        **summary,
        "file_rec_train_images_per_sec": median("file-rec", "train_images_per_sec"),
        "pipe_rec_train_images_per_sec": median("pipe-rec", "train_images_per_sec"),
        "file_lst_train_images_per_sec": results["file_lst"]["train_images_per_sec"],
        "file_rec_end_to_end_images_per_sec": median("file-rec", "end_to_end_images_per_sec"),
        "pipe_rec_end_to_end_images_per_sec": median("pipe-rec", "end_to_end_images_per_sec"),
        "file_lst_end_to_end_images_per_sec": results["file_lst"]["end_to_end_images_per_sec"],
        "pipe_over_file_train": ratio("train_images_per_sec"),
        "pipe_over_file_end_to_end": ratio("end_to_end_images_per_sec"),
        "target": "pipe_over_file_train >= 0.9 (Pipe no more than 10% slower)",
    }


def print_report(results: dict) -> None:
    s = results["summary"]
    print(
        f"\ninput pipeline: File {s['loader_file_images_per_sec']:.1f} img/s, Pipe "
        f"{s['loader_pipe_images_per_sec']:.1f} img/s, Pipe / File {s['loader_pipe_over_file']:.3f}"
    )
    if "pipe_over_file_train" not in s:
        return
    print(f"{results['train_images']} training images x {results['config']['epochs']} epochs")
    print(f"{'contender':<10} {'train img/s':>12} {'end-to-end img/s':>17}")
    for kind in ("file_rec", "pipe_rec", "file_lst"):
        train, total = s[f"{kind}_train_images_per_sec"], s[f"{kind}_end_to_end_images_per_sec"]
        print(f"{kind.replace('_', '-'):<10} {train:>12.2f} {total:>17.2f}")
    print(f"Pipe / File (.rec), training: {s['pipe_over_file_train']:.3f} (target >= 0.9)")
    print(f"Pipe / File (.rec), end to end: {s['pipe_over_file_end_to_end']:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
