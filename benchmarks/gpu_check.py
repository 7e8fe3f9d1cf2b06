"""The PyTorch engine on a real GPU: equivalence jobs and an end-to-end training benchmark.

Three steps, because the GPU machine may have PyTorch but no MXNet (MXNet 1.9.1 does not run on
its Python) and carries at most a few tens of MB each way:

1. here, with MXNet (``.venv``): ``python benchmarks/gpu_check.py prepare DIR`` exports the
   initial networks the job's MXNet side defines (symbol JSON; the big networks' parameter
   *shapes* only, to stay small) into ``DIR``;
2. on the GPU machine, with PyTorch only: ``python3 benchmarks/gpu_check.py run DIR OUT``
   makes the data (class-coded JPEGs packed as the product packs them), the initial parameters
   of the big networks (MXNet's Xavier initialisation), and runs real jobs through
   ``python -m train.engines.torch``: a ResNet-20 at 32 px in float32 and float16 whose model
   directories come back in ``OUT`` with the engine's own outputs on fixed images, then
   ResNet-18 and ResNet-50 at 224 px (bfloat16 and float16) for images/s per GPU and the time
   to the end of the first epoch. It prints one JSON line (and writes it to OUT/summary.json);
3. here again: ``python benchmarks/gpu_check.py verify OUT`` reloads the returned model
   directories with plain MXNet (``Module``, ``label_names=None``) and compares its outputs
   with the engine's.

Targets (issue 16): ResNet-18 >= 5,000 and ResNet-50 >= 2,500 images/s end to end on one
H100/H200.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (name, num_layers, image side, resize, classes, carry the parameters?)
NETWORKS = [
    ("r20", 20, 32, 36, 4, True),
    ("r18", 18, 224, 256, 10, False),
    ("r50", 50, 224, 256, 10, False),
]
PROBE_IMAGES = 64  # fixed validation images whose outputs the engine records for `verify`


# -- step 1: here, with MXNet -----------------------------------------------------------------
def prepare(directory: Path) -> None:
    """Export each network's initial graph as the job's MXNet side does."""
    import mxnet as mx

    from train import model
    from train.config import parse_hyperparameters
    from train.driver import exported_convention
    from train.formats import model_dir, params_io

    for name, layers, side, resize, classes, carry in NETWORKS:
        cfg = parse_hyperparameters(
            {"num_layers": str(layers), "image_shape": f"3,{side},{side}", "resize": str(resize)}
        )
        mx.random.seed(0)
        net = model.from_scratch(cfg, classes)
        net(mx.nd.zeros((1, 3, side, side)))
        out = directory / name
        out.mkdir(parents=True, exist_ok=True)
        model_dir.export_model(
            net,
            out,
            0,
            multi_label=False,
            image_shape=cfg.image_shape,
            batch_size=cfg.mini_batch_size,
            input_convention=exported_convention(cfg),
        )
        params = out / "image-classification-0000.params"
        if not carry:
            shapes = {k: list(v.shape) for k, v in params_io.load(params).items()}
            (out / "param-shapes.json").write_text(json.dumps(shapes))
            params.unlink()
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    print(f"prepared {directory} ({size / 1e6:.1f} MB)")


# -- step 2: on the GPU machine, PyTorch only -----------------------------------------------
def _xavier_params(shapes: dict[str, list[int]], seed: int) -> dict[str, np.ndarray]:
    """MXNet's initialisation of a fresh ResNet: Xavier (gaussian, fan-in, magnitude 2) for
    weights, 1 for BN gamma and moving variance, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    params = {}
    for key, shape in shapes.items():
        name = key.split(":", 1)[1]
        if name.endswith("weight"):
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0, np.sqrt(2.0 / fan_in), size=shape)
        elif name.endswith(("gamma", "running_var", "moving_var")):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        params[key] = value.astype(np.float32)
    return params


def _image(label: int, index: int, side: int, classes: int) -> np.ndarray:
    """A class-coded picture: a bright square whose place and colour give the class."""
    rng = np.random.default_rng(index)
    img = rng.integers(0, 90, size=(side, side, 3), dtype=np.uint8)
    cell = side // 4
    row, col = divmod(label % 16, 4)
    jitter = rng.integers(-cell // 8, cell // 8 + 1, size=2)
    y0, x0 = max(0, row * cell + jitter[0]), max(0, col * cell + jitter[1])
    colour = np.array([255, 80 + 17 * (label % classes), 40], dtype=np.uint8)
    img[y0 : y0 + cell, x0 : x0 + cell] = colour
    return img


def _encode(args: tuple[int, int, int, int, bool]) -> tuple[int, int, bytes]:
    from train import images

    index, label, side, classes, lossless = args
    rgb = _image(label, index, side, classes)
    data = images.encode_png(rgb) if lossless else images.encode_jpeg(rgb)
    return index, label, data


def _pack(directory: Path, count: int, side: int, classes: int, lossless: bool, seed: int):
    """``count`` records as the product packs them (.rec + .idx, JPEG train / PNG val)."""
    from train import records
    from train.inputs import recordio

    directory.mkdir(parents=True, exist_ok=True)
    rec, idx = directory / "data.rec", directory / "data.idx"
    jobs = [(seed + i, i % classes, side, classes, lossless) for i in range(count)]
    with ProcessPoolExecutor(os.cpu_count()) as pool, recordio.IndexedWriter(idx, rec) as writer:
        for index, label, data in pool.map(_encode, jobs, chunksize=64):
            writer.write(index - seed, recordio.pack_labels(index - seed, (float(label),), data))
    return records.PackedSet(rec, idx, count)


def _bundle(source: Path, target: Path, hps: dict, train, val, classes: int) -> Path:
    from train.config import parse_hyperparameters
    from train.data import DataSpec
    from train.engines import bundle
    from train.formats import params_io

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    shapes_file = target / "param-shapes.json"
    if shapes_file.exists():
        params = _xavier_params(json.loads(shapes_file.read_text()), seed=0)
        params_io.save(target / "image-classification-0000.params", params)
    cfg = parse_hyperparameters(hps)
    names = [f"class{i}" for i in range(classes)]
    spec = DataSpec(train, val, classes, names, 1, None)
    bundle.write_job(target, cfg, spec, None)
    return target


def _job(bundle_dir: Path, base: Path, timeout: float, env_extra: dict | None = None) -> dict:
    """One engine process, as the job's MXNet side starts it; returns its figures."""
    if base.exists():
        shutil.rmtree(base)
    (base / "input" / "config").mkdir(parents=True)
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(REPO)}
    env.update(env_extra or {})
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "train.engines.torch", str(bundle_dir)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.time() - start
    outcome = json.loads((bundle_dir / "outcome.json").read_text())
    state_file = base / "checkpoints" / "state.json"
    history = json.loads(state_file.read_text())["history"] if state_file.exists() else []
    first_epoch_end = wall - sum(h["time"] for h in history[1:])  # start-up + epoch 0
    return {
        "ok": proc.returncode == 0 and outcome["kind"] == "success",
        "outcome": outcome["kind"],
        "message": outcome.get("message", "")[-600:],
        "wall_s": round(wall, 1),
        "time_to_first_epoch_s": round(first_epoch_end, 1),
        "images_per_s": [round(h["samples_per_sec"]) for h in history],
        "val_acc": [round(h["validation_accuracy"], 4) for h in history],
        "train_acc": [round(h["train_accuracy"], 4) for h in history],
        "loss_scale_changes": proc.stdout.count("AMP: "),
        "log_tail": proc.stdout[-1500:] + proc.stderr[-1500:],
    }


def _probe(model_dir: Path, val: Path, out: Path, side: int) -> None:
    """The trained model's outputs (softmax) on the first validation images, with the
    images as the network got them, for `verify`."""
    import torch

    from train import artifacts
    from train.engines.torch import augment
    from train.engines.torch.data import RecordLoader
    from train.engines.torch.graph import SymbolNet

    epoch = max(artifacts.params_epochs(model_dir))
    net = SymbolNet.from_files(
        model_dir / artifacts.SYMBOL_FILE, model_dir / artifacts.params_file(epoch)
    ).eval()
    loader = RecordLoader(
        val,
        None,
        augment.AugmentSettings.for_evaluation((3, side, side), None),
        batch_size=PROBE_IMAGES,
        training=False,
        workers=2,
    )
    batch = next(iter(loader.epoch(0)))
    with torch.no_grad():
        probs = net.probabilities(net(batch.data.float())).numpy()
    np.savez_compressed(out, data=batch.data.numpy(), probs=probs, epoch=epoch)


def run(directory: Path, out: Path, scale: float, only: list[str] | None = None) -> dict:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "oic-gpu-check"
    work.mkdir(parents=True, exist_ok=True)
    summary: dict = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }
    t0 = time.time()
    small_train = _pack(work / "small-train", int(4000 * scale), 36, 4, False, 0)
    small_val = _pack(work / "small-val", 400, 36, 4, True, 10**6)
    n_big = int(12800 * scale)
    big_train = _pack(work / "big-train", n_big, 256, 10, False, 2 * 10**6)
    big_val = _pack(work / "big-val", int(1280 * scale), 256, 10, True, 3 * 10**6)
    summary["data_s"] = round(time.time() - t0, 1)
    # label, network, precision, epochs, batch, data, classes, side, environment
    small, big = (small_train, small_val, 4, 32), (big_train, big_val, 10, 224)
    jobs = [
        ("r20_fp32", "r20", "float32", 3, 128, small, {}),
        ("r20_fp16", "r20", "float16", 3, 128, small, {}),
        ("r20_bf16", "r20", "bfloat16", 3, 128, small, {}),
        ("r20_fp16_gpu_decode", "r20", "float16", 3, 128, small, {"OIC_GPU_DECODE": "1"}),
        ("r18_fp32", "r18", "float32", 2, 256, big, {}),
        ("r18_bf16", "r18", "bfloat16", 3, 256, big, {}),
        ("r18_bf16_gpu_decode", "r18", "bfloat16", 2, 256, big, {"OIC_GPU_DECODE": "1"}),
        ("r50_bf16", "r50", "bfloat16", 2, 256, big, {}),
        ("r18_fp16", "r18", "float16", 2, 256, big, {}),
        ("r50_fp16", "r50", "float16", 2, 256, big, {}),
    ]
    for label, net, dtype, epochs, batch, (train, val, classes, side), env in jobs:
        if only and label not in only:
            continue
        if not torch.cuda.is_available() and dtype != "float32":
            continue
        hps = {
            "num_layers": {"r20": "20", "r18": "18", "r50": "50"}[net],
            "image_shape": f"3,{side},{side}",
            "resize": str(36 if side == 32 else 256),
            "epochs": str(epochs),
            "mini_batch_size": str(batch),
            "learning_rate": "0.05",
            "precision_dtype": dtype,
            "augmentation_type": "crop",
            "training_engine": "pytorch",
        }
        bundle_dir = _bundle(directory / net, work / f"bundle-{label}", hps, train, val, classes)
        result = _job(bundle_dir, work / f"job-{label}", timeout=300, env_extra=env)
        summary[label] = result
        if not result["ok"]:
            print(result["log_tail"], file=sys.stderr)
            continue
        result.pop("log_tail")
        if net == "r20" and label in ("r20_fp32", "r20_fp16"):
            model = work / f"job-{label}" / "model"
            back = out / f"model-{label}"
            shutil.copytree(model, back)
            _probe(model, val.rec, out / f"probe-{label}.npz", side)
    summary["total_s"] = round(time.time() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return summary


# -- step 3: here again, with MXNet ----------------------------------------------------------
def verify(out: Path) -> None:
    """Plain MXNet reloads each returned model and reproduces the engine's outputs."""
    import mxnet as mx

    for probe in sorted(out.glob("probe-*.npz")):
        label = probe.stem.removeprefix("probe-")
        saved = np.load(probe)
        model_dir = out / f"model-{label}"
        epoch = int(saved["epoch"])
        sym, args, aux = mx.model.load_checkpoint(str(model_dir / "image-classification"), epoch)
        mod = mx.mod.Module(sym, label_names=None, context=mx.cpu())
        mod.bind(data_shapes=[("data", saved["data"].shape)], for_training=False)
        mod.set_params(args, aux)
        mod.forward(mx.io.DataBatch([mx.nd.array(saved["data"].astype(np.float32))]))
        mxnet_probs = mod.get_outputs()[0].asnumpy()
        diff = float(np.abs(mxnet_probs - saved["probs"]).max())
        agree = float((mxnet_probs.argmax(1) == saved["probs"].argmax(1)).mean())
        print(json.dumps({"model": label, "max_abs_diff": diff, "same_top_class": agree}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("directory", type=Path)
    r = sub.add_parser("run")
    r.add_argument("directory", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("--scale", type=float, default=1.0, help="data size factor (CPU smoke: 0.05)")
    r.add_argument("--only", nargs="*", help="job labels to run (default: all)")
    v = sub.add_parser("verify")
    v.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.directory)
    elif args.step == "run":
        run(args.directory, args.out, args.scale, args.only)
    else:
        verify(args.out)


if __name__ == "__main__":
    main()
