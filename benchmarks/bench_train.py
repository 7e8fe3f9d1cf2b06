"""Trainer benchmark: input pipeline and ResNet-18 training throughput against peers.

Runs, side by side in one process (the torchvision peers in a subprocess of ``.venv-bench``,
since GluonCV refuses to import beside torch >= 2) and interleaved round by round so that
load from other work on the machine hits every contender alike, on one generated JPEG set:

1. input pipeline, images/sec at 224 px, batch 32:
   - this trainer: ``train.records.pack`` once (reported as a one-time cost), then
     ``train.data.record_iter`` (C++ ``ImageRecordIter``, ``augmentation_type=crop``,
     ``preprocess_threads`` = cores) over the packed set;
   - ``mx.image.ImageIter`` over the same ``.lst`` (resize 256, random crop and mirror);
   - torchvision ``ImageFolder`` + ``DataLoader`` with as many workers as cores;
   - the raw ceiling: single-process OpenCV decode + resize + crop rate x cores;
2. ResNet-18 training, images/sec: the real MXNet engine's ``train_one_epoch`` on a hybridized
   ``train.model.from_scratch`` network fed by ``record_iter``, against a plain torchvision
   training loop (SGD, batch 32) fed by its ``DataLoader``, for the same number of batches after
   warm-up.

Prints a table with the ratios against the targets (loader >= 3x ImageIter and >= 1.5x
torchvision; training >= 1.2x torchvision) and writes the figures as JSON. Each ratio is the
median over rounds of back-to-back (paired) measurements, which cancels most of the load that
other work puts on a shared machine. MXNet's compute threads are set as ``python -m train``
sets them (``train.devices.configure_cpu_threads``); ``--mxnet-default-threads`` skips that.

    python benchmarks/bench_train.py            # defaults: 1,500 images, ~5 minutes
    python benchmarks/bench_train.py --quick    # a smoke run (small set, 1 round)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATASET_VERSION = "1"
NUM_CLASSES = 10
# Three size bands (pixels per side) so that decode and resize cost varies as in real data.
SIZE_BANDS = ((300, 400), (400, 520), (520, 640))
JPEG_QUALITY = 90
CROP = 224
RESIZE = 256
TARGETS = {
    "loader_vs_imageiter": 3.0,
    "loader_vs_torchvision": 1.5,
    "training_vs_torchvision": 1.2,
}
BUSY_FRACTION = 0.75  # of the cores: a training round counts as undisturbed above this CPU use
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MXNET_CPU_WORKER_NTHREADS",
    "MXNET_ENGINE_TYPE",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data set


def ensure_dataset(cache: Path, count: int, seed: int, workers: int) -> tuple[Path, Path]:
    """Generate ``count`` JPEGs (q90, 300-640 px, three size bands) once into ``cache``.

    Returns the image root (one ``class_<k>`` folder per class, for ``ImageFolder``) and the
    ``.lst`` file listing the same images (for the MXNet iterators)."""
    import numpy as np

    from tests import datagen

    base = cache / f"jpeg-{count}-s{seed}-v{DATASET_VERSION}"
    root, lst_path, done = base / "images", base / "images.lst", base / "done"
    if done.is_file():
        return root, lst_path
    log(f"generating {count} JPEGs into {base}")
    rng = random.Random(seed)
    jobs = []
    for index in range(count):
        label = index % NUM_CLASSES
        low, high = SIZE_BANDS[index % len(SIZE_BANDS)]
        size = (rng.randint(low, high), rng.randint(low, high))
        relpath = f"class_{label}/img_{index:05d}.jpg"
        jobs.append((datagen.Item(index, label, relpath), size, rng.randrange(2**32)))

    def write(job) -> None:
        item, size, item_seed = job
        image = datagen.make_image(item.label, random.Random(item_seed), size)
        # Add some low-frequency structure so the files are not all stripes and noise.
        yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
        wave = 40 * np.sin(xx / (9 + item.label)) * np.cos(yy / (13 + item.index % 7))
        image = np.clip(image.astype(np.float32) + wave[..., None], 0, 255).astype(np.uint8)
        datagen.write_jpeg(root / item.relpath, image, quality=JPEG_QUALITY)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(write, jobs))
    datagen.write_lst(lst_path, [job[0] for job in jobs])
    done.write_text("ok\n")
    return root, lst_path


def read_entries(lst_path: Path):
    from train import lst

    return lst.read_lst(lst_path, multi_label=False, num_classes=NUM_CLASSES)


# ----------------------------------------------------------------------------- contenders


def _rate(images: int, seconds: float) -> dict:
    return {"images": images, "seconds": seconds, "images_per_sec": images / seconds}


def measure_ceiling(paths: list[Path], cores: int) -> dict:
    """One process, one thread: read + cv2 decode + resize shorter side to 256 + random crop
    224 + mirror, per image. The ceiling is that rate times the number of cores."""
    import cv2
    import numpy as np

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    try:
        start = time.perf_counter()
        for path in paths:
            buf = np.frombuffer(path.read_bytes(), dtype=np.uint8)
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            h, w = image.shape[:2]
            scale = RESIZE / min(h, w)
            new_size = (max(RESIZE, round(w * scale)), max(RESIZE, round(h * scale)))
            image = cv2.resize(image, new_size)
            h, w = image.shape[:2]
            top, left = rng.integers(0, h - CROP + 1), rng.integers(0, w - CROP + 1)
            crop = image[top : top + CROP, left : left + CROP]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            np.ascontiguousarray(crop)
        elapsed = time.perf_counter() - start
    finally:
        cv2.setNumThreads(previous)
    result = _rate(len(paths), elapsed)
    result["single_process_images_per_sec"] = result["images_per_sec"]
    result["images_per_sec"] = result["images_per_sec"] * cores
    return result


def measure_packed_ceiling(rec: Path, cores: int) -> dict:
    """The same ceiling for this trainer's packed records (256 px JPEGs): read + decode +
    random crop, one thread, times cores. What ``record_iter`` could reach at best."""
    import cv2
    import numpy as np
    from mxnet import recordio

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    reader = recordio.MXRecordIO(str(rec), "r")
    count = 0
    try:
        start = time.perf_counter()
        while (item := reader.read()) is not None:
            _, payload = recordio.unpack(item)
            image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
            h, w = image.shape[:2]
            top, left = rng.integers(0, h - CROP + 1), rng.integers(0, w - CROP + 1)
            np.ascontiguousarray(image[top : top + CROP, left : left + CROP])
            count += 1
        elapsed = time.perf_counter() - start
    finally:
        reader.close()
        cv2.setNumThreads(previous)
    result = _rate(count, elapsed)
    result["single_process_images_per_sec"] = result["images_per_sec"]
    result["images_per_sec"] = result["images_per_sec"] * cores
    return result


def measure_pack(entries, root: Path, workers: int):
    """This trainer's one-time cost: pack .lst + JPEGs into RecordIO at resize 256, into a
    fresh cache directory (so the cache never hides the cost)."""
    from train import images, records

    scratch = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    settings = records.PackSettings(RESIZE, False, (CROP, CROP), images.DEFAULT_MAX_PIXELS)
    start = time.perf_counter()
    packed = records.pack(
        entries,
        root,
        name="train",
        settings=settings,
        cache_dir=scratch,
        workers=workers,
        max_bad=0.0,
    )
    elapsed = time.perf_counter() - start
    result = _rate(packed.count, elapsed)
    result.update(
        workers=workers,
        rec_bytes=packed.rec.stat().st_size,
        source_bytes=sum((root / e.relpath).stat().st_size for e in entries),
    )
    return packed, scratch, result


def trainer_config(cores: int, batch_size: int):
    from train.config import TrainConfig

    return TrainConfig(
        num_classes=NUM_CLASSES,
        num_layers=18,
        augmentation_type="crop",
        mini_batch_size=batch_size,
        image_shape=(3, CROP, CROP),
        resize=RESIZE,
        preprocess_threads=cores,
    )


def data_spec(packed):
    from train.data import DataSpec

    names = [f"class_{k}" for k in range(NUM_CLASSES)]
    return DataSpec(packed, packed, NUM_CLASSES, names, 1, None)


def make_record_iter(packed, cores: int, batch_size: int):
    from train.data import record_iter

    cfg = trainer_config(cores, batch_size)
    return record_iter(
        packed, data_spec(packed), cfg, training=True, batch_size=batch_size, threads=cores
    )


def make_image_iter(lst_path: Path, root: Path, batch_size: int):
    import mxnet as mx

    return mx.image.ImageIter(
        batch_size=batch_size,
        data_shape=(3, CROP, CROP),
        path_imglist=str(lst_path),
        path_root=str(root),
        shuffle=True,
        resize=RESIZE,
        rand_crop=True,
        rand_mirror=True,
        mean=True,  # ImageNet mean/std, as the other contenders normalise too
        std=True,
    )


def time_mx_epochs(data_iter, epochs: int, warmup: int) -> dict:
    """Full epochs of an MXNet DataIter after ``warmup`` untimed batches; each batch is
    waited for, padding is not counted."""
    for batch in islice(data_iter, warmup):
        batch.data[0].wait_to_read()
    per_epoch = []
    for _ in range(epochs):
        count = 0
        start = time.perf_counter()
        data_iter.reset()
        for batch in data_iter:
            batch.data[0].wait_to_read()
            count += batch.data[0].shape[0] - (batch.pad or 0)
        per_epoch.append(_rate(count, time.perf_counter() - start))
    images = sum(e["images"] for e in per_epoch)
    seconds = sum(e["seconds"] for e in per_epoch)
    result = _rate(images, seconds)
    result["epochs"] = per_epoch
    return result


class _Turns:
    """Hands ``train_one_epoch`` the next ``n`` batches of one continuous pass over an MXNet
    iterator, as within a real epoch: its ``reset`` at the start of each turn is ignored and
    the iterator is reset only when a pass ends. (Resetting every turn would restart the C++
    prefetcher each time, which a real epoch never does.)"""

    def __init__(self, data_iter):
        self.data_iter = data_iter
        self.batches = self._forever()
        self.n = 0

    def _forever(self):
        while True:
            self.data_iter.reset()
            yield from self.data_iter

    def take(self, n: int) -> _Turns:
        self.n = n
        return self

    def reset(self) -> None:
        pass

    def __iter__(self):
        return islice(self.batches, self.n)


class MxTrainer:
    """This trainer's real training step: the MXNet engine's ``train_one_epoch`` on a hybridized
    ``from_scratch`` ResNet-18 with the optimizer and Trainer that its ``network`` builds."""

    def __init__(self, packed, cores: int, batch_size: int):
        import mxnet as mx

        from train import model
        from train.engines.mxnet import steps as engine
        from train.engines.mxnet.network import make_trainer

        cfg = trainer_config(cores, batch_size)
        self.ctx = [mx.cpu()]
        self.net = model.from_scratch(cfg, NUM_CLASSES)
        self.net.collect_params().reset_ctx(self.ctx)
        self.net.hybridize(static_alloc=True, static_shape=True)
        self.trainer = make_trainer(self.net, cfg, "device", False, mixed=False)
        self.setup = engine.make_loss(False, None)
        self.turns = _Turns(make_record_iter(packed, cores, batch_size))
        self.epoch = 0

    def run(self, batches: int) -> dict:
        from train.engines.mxnet import steps as engine

        self.epoch += 1
        return engine.train_one_epoch(
            self.net,
            self.trainer,
            self.turns.take(batches),
            self.ctx,
            self.setup,
            epoch=self.epoch,
            stop=threading.Event(),
        )

    def measure(self, warmup: int, batches: int) -> dict:
        """Images/sec over ``batches`` batches. ``train_one_epoch`` waits only for the outputs
        and losses it scores; the last batch's backward pass and update may still be running
        in MXNet's engine when it returns (negligible over an epoch, not over a few batches),
        so the clock stops after ``mx.nd.waitall()``."""
        import mxnet as mx

        if warmup:
            self.run(warmup)
        mx.nd.waitall()
        cpu = _cpu_seconds()
        start = time.perf_counter()
        result = self.run(batches)
        mx.nd.waitall()
        elapsed = time.perf_counter() - start
        images = round(result["samples_per_sec"] * result["time"])
        return {
            "images": images,
            "seconds": elapsed,
            "images_per_sec": images / elapsed,
            "images_per_sec_as_logged": result["samples_per_sec"],
            "cpu_utilisation": (_cpu_seconds() - cpu) / elapsed,
            "loss": result["loss"],
            "accuracy": result["accuracy"],
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TorchPeer:
    """The torchvision side, in its own interpreter (``benchmarks/peers/torch_peer.py``),
    kept running so that both sides take turns in short chunks."""

    def __init__(self, python: str | None, root: Path, args: argparse.Namespace):
        self.proc = None
        self.reason = None
        if python is None:
            self.reason = "no torch interpreter (make bench-venv, or --torch-python)"
            return
        peer = REPO / "benchmarks" / "peers" / "torch_peer.py"
        command = [
            python, str(peer), "--root", str(root), "--workers", str(args.cores),
            "--batch-size", str(args.batch_size), "--transform", args.torch_transform,
            "--seed", str(args.seed),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def call(self, cmd: str, **kwargs) -> dict:
        if self.proc is None:
            return {"skipped": self.reason}
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch peer exited ({self.proc.wait()}) during {cmd!r}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"torch peer failed during {cmd!r}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# ----------------------------------------------------------------------------- reporting


def _median(rounds: list[dict], key: str = "images_per_sec") -> float | None:
    values = [r[key] for r in rounds if key in r]
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def summarise(results: dict) -> dict:
    loaders = results["loader_rounds"]
    medians = {
        name: _median([r[name] for r in loaders])
        for name in ("record_iter", "image_iter", "torchvision", "ceiling", "packed_ceiling")
    }
    training = results["training_rounds"]
    medians["train_mxnet"] = _median([r["mxnet"] for r in training])
    medians["train_torch"] = _median([r["torchvision"] for r in training])
    # Each round measures the contenders back to back, so a round's ratio compares them under
    # the same load; the headline ratio is the median of those paired ratios.
    per_round = {
        "loader_vs_imageiter": [
            _ratio(r["record_iter"]["images_per_sec"], r["image_iter"]["images_per_sec"])
            for r in loaders
        ],
        "loader_vs_torchvision": [
            _ratio(r["record_iter"]["images_per_sec"], r["torchvision"].get("images_per_sec"))
            for r in loaders
        ],
        "training_vs_torchvision": [
            _ratio(r["mxnet"]["images_per_sec"], r["torchvision"].get("images_per_sec"))
            for r in training
        ],
    }
    ratios = {
        k: (statistics.median(v) if v and None not in v else None) for k, v in per_round.items()
    }
    ratio_of_medians = {
        "loader_vs_imageiter": _ratio(medians["record_iter"], medians["image_iter"]),
        "loader_vs_torchvision": _ratio(medians["record_iter"], medians["torchvision"]),
        "training_vs_torchvision": _ratio(medians["train_mxnet"], medians["train_torch"]),
    }
    utilisation = {
        side: _median([r[side] for r in training], "cpu_utilisation")
        for side in ("mxnet", "torchvision")
    }
    # Rounds in which both training processes kept most cores busy: the least disturbed by
    # other work (a framework whose compute threads lose a core slows down a lot).
    busy = BUSY_FRACTION * results["config"]["cores"]
    quiet = [
        _ratio(r["mxnet"]["images_per_sec"], r["torchvision"]["images_per_sec"])
        for r in training
        if min(r["mxnet"].get("cpu_utilisation", 0), r["torchvision"].get("cpu_utilisation", 0))
        >= busy
    ]
    pack = results["pack"]
    first_epoch = None
    if medians["record_iter"]:
        first_epoch = pack["images"] / (pack["seconds"] + pack["images"] / medians["record_iter"])
    return {
        "medians_images_per_sec": medians,
        "ratios": ratios,
        "ratios_per_round": per_round,
        "ratios_of_medians": ratio_of_medians,
        "training_ratios_uncontended_rounds": quiet,
        "training_cpu_utilisation": utilisation,
        "targets": TARGETS,
        "met": {k: (None if v is None else v >= TARGETS[k]) for k, v in ratios.items()},
        "first_epoch_with_packing_images_per_sec": first_epoch,
    }


def print_report(results: dict) -> None:
    s = results["summary"]
    m = s["medians_images_per_sec"]
    cfg = results["config"]
    cores = cfg["cores"]
    pack = results["pack"]
    ceilings = [r["ceiling"] for r in results["loader_rounds"]]
    ceiling_1p = _median(ceilings, "single_process_images_per_sec")
    width = 58
    timed = cfg["train_batches"] * cfg["train_rounds"]
    title = f"(2) ResNet-18 training, {timed} batches after warm-up"
    lines = [
        "",
        f"Trainer benchmark: {cfg['images']} JPEGs ({SIZE_BANDS[0][0]}-{SIZE_BANDS[-1][1]} px, "
        f"q{JPEG_QUALITY}), {CROP} px crops, batch {cfg['batch_size']}, {cores} cores, "
        f"median of {cfg['rounds']} interleaved rounds",
        f"load average before/after: {results['load_before']} / {results['load_after']}",
        "",
        f"{'(1) input pipeline':<{width}}{'img/s':>10}{'trainer ÷':>11}",
        f"{'this trainer: train.data.record_iter (packed .rec)':<{width}}"
        f"{_fmt(m['record_iter']):>10}{'1.00x':>11}",
    ]
    rows = [
        ("mx.image.ImageIter (.lst + JPEG)", m["image_iter"]),
        (
            f"torchvision ImageFolder + DataLoader({cores} workers, {cfg['torch_transform']})",
            m["torchvision"],
        ),
        (f"raw ceiling: cv2 decode+resize+crop, 1 proc x {cores}", m["ceiling"]),
        (f"packed ceiling: cv2 decode+crop of the .rec, x {cores}", m["packed_ceiling"]),
    ]
    for name, value in rows:
        ratio = _ratio(m["record_iter"], value)
        lines.append(f"{name:<{width}}{_fmt(value):>10}{_fmt(ratio, 2) + 'x':>11}")
    lines += [
        f"  (single-process cv2 rate on the original JPEGs: {_fmt(ceiling_1p)} img/s)",
        f"one-time packing ({pack['workers']} threads): {pack['images']} images in "
        f"{pack['seconds']:.1f} s = {_fmt(pack['images_per_sec'])} img/s; first epoch "
        f"including packing: {_fmt(s['first_epoch_with_packing_images_per_sec'])} img/s",
        "",
        f"{title:<{width}}{'img/s':>10}",
        f"{'this trainer: engines.mxnet train_one_epoch + record_iter':<{width}}"
        f"{_fmt(m['train_mxnet'], 2):>10}",
        f"{'torchvision resnet18, SGD, DataLoader':<{width}}{_fmt(m['train_torch'], 2):>10}",
        f"  (training process CPU use, cores busy: this trainer "
        f"{_fmt(s['training_cpu_utilisation']['mxnet'], 2)}, torchvision "
        f"{_fmt(s['training_cpu_utilisation']['torchvision'], 2)}; MXNet OpenMP threads: "
        f"OMP_NUM_THREADS={results['environment']['thread_env']['OMP_NUM_THREADS']})",
        "",
        f"  training ratio in undisturbed rounds (both sides kept >= {BUSY_FRACTION:.0%} of the "
        "cores busy): "
        + (", ".join(_fmt(r, 2) for r in s["training_ratios_uncontended_rounds"]) or "none"),
        "",
        "targets (ratio: median over rounds of the paired, back-to-back ratios)",
    ]
    names = {
        "loader_vs_imageiter": "loader vs mx.image.ImageIter",
        "loader_vs_torchvision": "loader vs torchvision DataLoader",
        "training_vs_torchvision": "training vs torchvision loop",
    }
    for key, label in names.items():
        ratio, met = s["ratios"][key], s["met"][key]
        rounds = ", ".join(_fmt(r, 2) for r in s["ratios_per_round"][key])
        verdict = "n/a" if met is None else ("MET" if met else "MISSED")
        lines.append(
            f"  {label:<34}{_fmt(ratio, 2):>6}x  (target >= {TARGETS[key]}x)  {verdict:<7}"
            f" per round: {rounds}"
        )
    print("\n".join(lines))


# ----------------------------------------------------------------------------- main


def default_torch_python() -> str | None:
    candidate = REPO / ".venv-bench" / "bin" / "python"
    return str(candidate) if candidate.exists() else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description="Input-pipeline and ResNet-18 training throughput of this trainer against "
        "mx.image.ImageIter and torchvision, interleaved in one run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=1500, help="generated JPEGs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache-dir", type=Path, default=REPO / ".cache" / "bench", help="generated data"
    )
    parser.add_argument("--cores", type=int, default=cores, help="threads/workers per loader")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per part")
    parser.add_argument("--loader-epochs", type=int, default=1, help="timed epochs per round")
    parser.add_argument(
        "--train-rounds", type=int, default=8, help="training turns of each side, alternating"
    )
    parser.add_argument(
        "--train-batches", type=int, default=2, help="timed training batches per side per turn"
    )
    parser.add_argument(
        "--train-warmup", type=int, default=2, help="untimed batches before the first turn"
    )
    parser.add_argument(
        "--torch-transform",
        choices=("rrc", "resize-crop"),
        default="rrc",
        help="torchvision augmentation: RandomResizedCrop(224), or Resize(256)+RandomCrop(224)",
    )
    parser.add_argument(
        "--torch-python",
        default=default_torch_python(),
        help="interpreter with torch + torchvision (the .venv-bench venv)",
    )
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument(
        "--mxnet-default-threads",
        action="store_true",
        help="leave MXNet's own OpenMP default (half the logical CPUs on x86) instead of the "
        "trainer's one thread per physical core (train.devices.configure_cpu_threads)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "benchmarks" / "results" / "train.json",
        help="where to write the JSON results",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 300 images, 1 round, 2 training batches"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.rounds, args.train_rounds = 300, 1, 1
        args.train_batches, args.train_warmup = 2, 1
    return args


def environment(args) -> dict:
    import cv2
    import mxnet as mx
    import numpy as np

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    features = mx.runtime.Features()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host_cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {"mxnet": mx.__version__, "numpy": np.__version__, "opencv": cv2.__version__},
        "mxnet_features": {k: features.is_enabled(k) for k in ("MKLDNN", "OPENMP", "OPENCV")},
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
        "torch_python": args.torch_python,
    }


def loader_round(state: dict, args, cores: int) -> dict:
    """One turn of every input pipeline, one after the other."""
    row = {}
    row["record_iter"] = time_mx_epochs(state["record_iter"], args.loader_epochs, warmup=2)
    row["image_iter"] = time_mx_epochs(state["image_iter"], args.loader_epochs, warmup=2)
    row["torchvision"] = state["peer"].call("loader", epochs=args.loader_epochs)
    row["ceiling"] = measure_ceiling(state["paths"], cores)
    row["packed_ceiling"] = measure_packed_ceiling(state["packed"].rec, cores)
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.mxnet_default_threads:
        from train import devices

        devices.configure_cpu_threads()  # as `python -m train` does, before MXNet loads
    cores = args.cores
    results: dict = {
        "config": {
            "images": args.images,
            "cores": cores,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "loader_epochs": args.loader_epochs,
            "train_rounds": args.train_rounds,
            "train_batches": args.train_batches,
            "train_warmup": args.train_warmup,
            "torch_transform": args.torch_transform,
            "mxnet_default_threads": args.mxnet_default_threads,
        },
        "environment": environment(args),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    root, lst_path = ensure_dataset(args.cache_dir, args.images, args.seed, cores)
    entries = read_entries(lst_path)

    log(f"packing {len(entries)} images ({cores} threads)")
    packed, scratch, results["pack"] = measure_pack(entries, root, cores)
    peer = TorchPeer(args.torch_python, root, args)
    try:
        results["torch_peer"] = peer.call("info")
        state = {
            "paths": [root / e.relpath for e in entries],
            "packed": packed,
            "peer": peer,
            "record_iter": make_record_iter(packed, cores, args.batch_size),
            "image_iter": make_image_iter(lst_path, root, args.batch_size),
        }
        results["loader_rounds"] = []
        for r in range(args.rounds):
            log(f"loader round {r + 1}/{args.rounds}")
            row = loader_round(state, args, cores)
            log(
                "  img/s: "
                + ", ".join(f"{k} {v.get('images_per_sec', 0):.0f}" for k, v in row.items())
            )
            results["loader_rounds"].append(row)
        del state["record_iter"], state["image_iter"]
        peer.call("close_loader")

        results["training_rounds"] = []
        if not args.skip_training:
            mx_trainer = MxTrainer(packed, cores, args.batch_size)
            for r in range(args.train_rounds):
                log(
                    f"training round {r + 1}/{args.train_rounds}: {args.train_batches} batches each"
                )
                warmup = args.train_warmup if r == 0 else 0
                row = {"mxnet": mx_trainer.measure(warmup, args.train_batches)}
                row["torchvision"] = peer.call("train", batches=args.train_batches, warmup=warmup)
                log(
                    f"  img/s: mxnet {row['mxnet']['images_per_sec']:.2f}, torchvision "
                    f"{row['torchvision'].get('images_per_sec', 0):.2f}"
                )
                results["training_rounds"].append(row)
    finally:
        peer.close()
        shutil.rmtree(scratch, ignore_errors=True)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["summary"] = summarise(results)
    print_report(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
