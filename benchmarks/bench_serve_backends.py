"""Serving benchmark, MXNet against ONNX Runtime: the same requests to the same stack, one run.

    python benchmarks/bench_serve_backends.py     # ~3 minutes on 2 cores; needs nginx and wrk

For each round, the real server (nginx -> gunicorn -> Flask -> micro-batcher) is started with
``SERVE_BACKEND=mxnet`` then ``SERVE_BACKEND=onnxruntime`` on the same model directory (one
server at a time, so they do not share the cores), and wrk POSTs one 224 px JPEG per request:
batch-1 latency (concurrency 1, p50 and p99) and throughput at concurrency 16. The model is
ResNet-18 at 3x224x224 with random weights and its ``model.onnx`` written as training writes it.
Prints each round, then the best figure of each backend over the rounds side by side with the
ONNX Runtime / MXNet ratio (other processes can only slow a measurement down).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_serve import LUA, WrkResult, run_wrk, write_jpeg  # noqa: E402
from tests.serve_fixtures import ServerProcess, make_model_dir  # noqa: E402

BACKENDS = ("mxnet", "onnxruntime")


@dataclass(frozen=True)
class Measured:
    """One backend in one round."""

    backend: str
    ready_s: float  # server start to /ping 200 (model load, warm-up)
    single: WrkResult  # concurrency 1
    loaded: WrkResult  # concurrency 16


def measure(tmp: Path, backend: str, jpeg: Path, script: Path, seconds: int) -> Measured:
    """Start the server on ``backend``, warm it up, run wrk at concurrency 1 and 16."""
    log = tmp / f"server-{backend}.log"
    start = time.perf_counter()
    with ServerProcess(tmp, log, {"SERVE_BACKEND": backend}) as server:
        server.wait_ready(timeout=300)
        ready = time.perf_counter() - start
        if f"SERVE_BACKEND={backend}: {backend}" not in server.log():
            raise RuntimeError(f"the server did not use {backend}:\n{server.log()}")
        run_wrk(server.url, script, jpeg, 4, 3)  # warm-up: thread pool, batch shapes
        single = run_wrk(server.url, script, jpeg, 1, seconds)
        loaded = run_wrk(server.url, script, jpeg, 16, seconds)
    return Measured(backend, ready, single, loaded)


def show(rows: list[Measured]) -> None:
    for m in rows:
        print(
            f"  {m.backend:<12} ready {m.ready_s:5.1f} s | c1 p50 {m.single.p50_ms:6.2f} ms, "
            f"p99 {m.single.p99_ms:6.2f} ms | c16 {m.loaded.requests_per_s:6.1f} req/s, "
            f"p50 {m.loaded.p50_ms:6.1f} ms | errors {m.single.errors + m.loaded.errors}"
        )


def side_by_side(rounds: list[list[Measured]]) -> None:
    """Best of the rounds per backend (lowest latency, highest throughput) and the ratios."""
    best = {}
    for backend in BACKENDS:
        mine = [m for r in rounds for m in r if m.backend == backend]
        best[backend] = {
            "c1 p50 ms": min(m.single.p50_ms for m in mine),
            "c1 p99 ms": min(m.single.p99_ms for m in mine),
            "c16 req/s": max(m.loaded.requests_per_s for m in mine),
            "c16 p50 ms": min(m.loaded.p50_ms for m in mine),
            "ready s": statistics.median(m.ready_s for m in mine),
        }
    print(f"\n== best of {len(rounds)} rounds ==")
    print(f"{'figure':<12} {'mxnet':>10} {'onnxruntime':>12} {'ORT/MXNet':>10}")
    for figure in best["mxnet"]:
        mx_value, ort_value = best["mxnet"][figure], best["onnxruntime"][figure]
        print(f"{figure:<12} {mx_value:>10.2f} {ort_value:>12.2f} {ort_value / mx_value:>10.2f}")
    print("(latency: lower is better; req/s: higher is better; ready: median start-up time)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="duration of each wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=18)
    parser.add_argument("--size", type=int, default=224, help="model input and JPEG size")
    args = parser.parse_args(argv)
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool, path=os.environ["PATH"] + ":/usr/sbin"):
            sys.exit(f"{tool} is not installed: apt-get install -y {tool}")
    from train.formats import onnx as onnx_format

    with tempfile.TemporaryDirectory(prefix="bench-backends-") as scratch:
        tmp = Path(scratch)
        model_dir = make_model_dir(
            tmp / "model",
            num_layers=args.layers,
            image_shape=(3, args.size, args.size),
            resize=round(args.size * 256 / 224),
            num_classes=10,
        )
        onnx_format.write(model_dir)
        jpeg = tmp / "request.jpg"
        size = len(write_jpeg(jpeg, args.size))
        script = tmp / "post_jpeg.lua"
        script.write_text(LUA)
        print(
            f"ResNet-{args.layers} {args.size}x{args.size}, {os.cpu_count()} CPUs, JPEG {size} "
            f"bytes, default server settings, load average {os.getloadavg()[0]:.2f}"
        )
        rounds = []
        for number in range(1, args.rounds + 1):
            rows = [measure(tmp, b, jpeg, script, args.seconds) for b in BACKENDS]
            print(f"\n== round {number} (load average {os.getloadavg()[0]:.2f}) ==")
            show(rows)
            rounds.append(rows)
    side_by_side(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
