"""Which devices to train and serve on: every visible GPU, else the CPU. Training refuses GPUs
that MXNet 1.9.1's CUDA wheels cannot run; serving falls back to the CPU on them.

The mxnet-cu112/cu117 1.9.1 wheels carry machine code for compute capability 5.0, 6.0, 7.0,
8.0 and 8.6 and no PTX: Maxwell through Ada run, Kepler (K80, ml.p2) and Hopper or newer
(H100, ml.p5) fail in the first kernel with "no kernel image is available". We check first.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from train.errors import ClientError

logger = logging.getLogger(__name__)

SUPPORTED_MAJORS = (5, 6, 7, 8)
SUPPORTED_GPUS = (
    "Maxwell, Pascal, Volta, Turing, Ampere and Ada GPUs (compute capability 5.0-8.9), e.g. "
    "T4, V100, A10G, A100, L4, L40S: SageMaker ml.g4dn, ml.p3, ml.g5, ml.p4d, ml.g6, ml.g6e"
)
# A testing aid: N CPU contexts instead of one, to exercise the several-device code paths
# (batch splitting, the 'device' KVStore, optimizer state, validation) on a machine without GPUs.
CPU_CONTEXTS_ENV = "OIC_CPU_CONTEXTS"
_CU_ATTR_CC_MAJOR = 75
_CU_ATTR_CC_MINOR = 76


@dataclass(frozen=True)
class Gpu:
    """One GPU as the CUDA driver describes it."""

    index: int
    name: str
    capability: tuple[int, int]

    @property
    def supported(self) -> bool:
        """Whether MXNet 1.9.1's CUDA wheels carry machine code for it."""
        return self.capability[0] in SUPPORTED_MAJORS

    def __str__(self) -> str:
        major, minor = self.capability
        return f"GPU {self.index} ({self.name}, compute capability {major}.{minor})"


def query_gpus(count: int) -> list[Gpu]:
    """Name and compute capability of each GPU through the driver API (libcuda), [] if
    unavailable."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return []
    if cuda.cuInit(0) != 0:
        return []
    result = []
    for ordinal in range(count):
        device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        if cuda.cuDeviceGet(ctypes.byref(device), ordinal) != 0:
            return []
        cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, device)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, device)
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGetName(name, len(name), device)
        label = name.value.decode(errors="replace") or "unknown GPU"
        result.append(Gpu(ordinal, label, (major.value, minor.value)))
    return result


def visible_gpus() -> list[Gpu]:
    """Every GPU this process may use (``CUDA_VISIBLE_DEVICES`` applies), asked of the driver
    without any framework, [] when there is no driver or no GPU."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return []
    count = ctypes.c_int()
    try:
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return []
    except AttributeError:  # not a real driver (a stub without these functions): no GPU
        return []
    return query_gpus(count.value)


def driver_cuda_version() -> str | None:
    """The newest CUDA version the installed driver supports (``12.2``), None without one."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int()
        if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def compute_capabilities(count: int) -> list[tuple[int, int]]:
    """Compute capability of each GPU, [] if the driver cannot be asked."""
    return [gpu.capability for gpu in query_gpus(count)]


def check_supported(capabilities: list[tuple[int, int]]) -> None:
    """Raise a ClientError naming the supported GPUs if any device is too old or too new."""
    bad = [
        f"GPU {i}: compute capability {ma}.{mi}"
        for i, (ma, mi) in enumerate(capabilities)
        if ma not in SUPPORTED_MAJORS
    ]
    if bad:
        raise ClientError(
            f"unsupported GPU ({'; '.join(bad)}): MXNet 1.9.1 runs only on {SUPPORTED_GPUS}. "
            f"Not on Kepler (K80, ml.p2) nor Hopper or newer (H100/H200, ml.p5)."
        )


def physical_cores() -> int:
    """Cores (not hyperthreads) this process may run on, from the kernel's CPU topology."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus) or os.cpu_count() or 1
        cores.add((package, core))
    return len(cores) or os.cpu_count() or 1


def configure_cpu_threads() -> None:
    """Give MXNet one compute thread per physical core; call before MXNet is imported.

    Without OMP_NUM_THREADS, MXNet 1.9.1 on x86 uses half of the logical CPUs, assuming two
    hyperthreads per core. That is the core count on a hyperthreaded host, but on a VM that
    exposes one thread per core (2 vCPUs: 1 compute thread) it leaves half the machine idle and
    halves CPU training speed. A value the user set (OMP_NUM_THREADS or MXNET_OMP_MAX_THREADS)
    is kept.
    """
    if "OMP_NUM_THREADS" in os.environ or "MXNET_OMP_MAX_THREADS" in os.environ:
        return
    os.environ["OMP_NUM_THREADS"] = str(physical_cores())


def training_contexts(precision_dtype: str, environ: Mapping[str, str] | None = None) -> list:
    """All visible GPUs, or the CPU when there is none (``$OIC_CPU_CONTEXTS`` CPU contexts, one
    by default); refuses float16 on the CPU."""
    import mxnet as mx

    count = mx.context.num_gpus()
    if count == 0:
        if precision_dtype == "float16":
            raise ClientError(
                "precision_dtype=float16 needs a GPU and none is visible; use float32 on the "
                "CPU, or run on a GPU instance (and with --gpus all / a compose GPU reservation)"
            )
        cpus = cpu_context_count(os.environ if environ is None else environ)
        if cpus == 1:
            logger.info("No GPU visible: training on the CPU")
        else:
            logger.info("No GPU visible: training on %d CPU contexts (%s)", cpus, CPU_CONTEXTS_ENV)
        return [mx.cpu(i) for i in range(cpus)]
    check_supported(compute_capabilities(count))
    logger.info("Training on %d GPU(s)", count)
    return [mx.gpu(i) for i in range(count)]


def cpu_context_count(environ: Mapping[str, str]) -> int:
    """``$OIC_CPU_CONTEXTS`` (a testing aid), 1 when unset.

    Raises:
        ClientError: the value is not a positive integer.
    """
    raw = environ.get(CPU_CONTEXTS_ENV, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ClientError(f"{CPU_CONTEXTS_ENV}={raw!r} must be a positive integer (or unset)")
    return int(raw)


def serving_gpu(worker_index: int) -> Gpu | None:
    """The GPU a server worker would use (``worker_index`` modulo the number of GPUs), None
    when there is none or the driver cannot say what it is (:func:`inference_context` then
    lets MXNet use it)."""
    import mxnet as mx

    count = mx.context.num_gpus()
    if count == 0:
        return None
    index = worker_index % count
    return next((g for g in query_gpus(count) if g.index == index), None)


def inference_context(worker_index: int):
    """The device a server worker runs its MXNet model on: GPU ``worker_index`` (modulo the
    number of GPUs) when MXNet can run it, else the CPU, with a warning that names the GPU.

    A GPU MXNet 1.9.1 cannot run (Kepler, Hopper or newer) would fail at warm-up with "no
    kernel image is available"; serving on the CPU is slower but works. (``SERVE_BACKEND=auto``
    serves Hopper and newer with ONNX Runtime instead: ``serve.backends``.)
    """
    import mxnet as mx

    count = mx.context.num_gpus()
    if count == 0:
        return mx.cpu()
    gpu = serving_gpu(worker_index)
    if gpu is not None and not gpu.supported:
        logger.warning(
            "%s cannot run MXNet 1.9.1, which runs only on %s: serving on the CPU instead "
            "(slower). SERVE_BACKEND=auto or onnxruntime serves Hopper and newer GPUs with ONNX "
            "Runtime.",
            gpu,
            SUPPORTED_GPUS,
        )
        return mx.cpu()
    return mx.gpu(worker_index % count)
