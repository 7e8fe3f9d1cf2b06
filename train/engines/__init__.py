"""The training engines and which one a job runs (``training_engine``).

Both engines train the same network definition (MXNet's symbol, built by the job's MXNet side),
read the same packed data, log the same lines and write the same model files; the driver
(:mod:`train.driver`) runs the epochs for either. ``auto`` follows one fixed table of the
devices, the same facts serving's backend choice uses (``train.devices.Gpu.supported``):

======================================================  ========================================
devices                                                 engine
======================================================  ========================================
no GPU                                                  MXNet (oneDNN: faster on the CPUs measured)
GPUs MXNet 1.9.1 runs: compute capability 5.0-8.9       MXNet on the GPUs
(Maxwell to Ada: T4, V100, A10G, A100, L4, L40S)
a GPU of compute capability 9.0 or newer                PyTorch on the GPUs
(Hopper, Blackwell: H100, H200, B200, RTX 50-series)
======================================================  ========================================
"""

from __future__ import annotations

from dataclasses import dataclass

from train.devices import Gpu
from train.errors import ClientError

MXNET = "mxnet"
PYTORCH = "pytorch"
AUTO = "auto"
# The torch build (CUDA 12.8) carries machine code for sm_70 (Volta) to sm_120 (Blackwell).
TORCH_MIN_CAPABILITY = (7, 0)


@dataclass(frozen=True)
class Choice:
    """The engine a job runs, and why (logged)."""

    engine: str
    reason: str


def choose(setting: str, gpus: list[Gpu], precision_dtype: str = "float32") -> Choice:
    """Apply ``training_engine`` (``setting``) to the visible GPUs.

    Raises:
        ClientError: the engine asked for cannot run on these devices or this precision.
    """
    if precision_dtype == "float16" and not gpus:
        raise ClientError(
            "precision_dtype=float16 needs a GPU and none is visible; use float32 on the "
            "CPU, or run on a GPU instance (and with --gpus all / a compose GPU reservation)"
        )
    if setting == AUTO:
        if not gpus:
            choice = Choice(MXNET, "no GPU visible: MXNet's CPU kernels (oneDNN) train faster")
        elif all(gpu.supported for gpu in gpus):
            choice = Choice(MXNET, f"{gpus[0]}: MXNet 1.9.1 runs it")
        elif all(gpu.capability >= (9, 0) for gpu in gpus):
            choice = Choice(PYTORCH, f"{gpus[0]}: MXNet 1.9.1 has no kernels for it")
        else:
            choice = Choice(MXNET, f"{gpus[0]}: too old for both engines")  # MXNet names them
    else:
        choice = Choice(setting, f"training_engine={setting}")
    if choice.engine == PYTORCH:
        old = [gpu for gpu in gpus if gpu.capability < TORCH_MIN_CAPABILITY]
        if old:
            raise ClientError(
                f"training_engine=pytorch cannot use {old[0]}: its CUDA 12.8 build needs compute "
                f"capability 7.0 or newer; use training_engine=mxnet (or auto) on this GPU"
            )
    elif precision_dtype == "bfloat16":
        raise ClientError(
            "precision_dtype=bfloat16 needs the PyTorch engine on a GPU of compute capability "
            "8.0 or newer: set training_engine=pytorch, or use float16/float32 with MXNet"
        )
    if precision_dtype == "bfloat16" and any(gpu.capability < (8, 0) for gpu in gpus):
        raise ClientError(
            f"precision_dtype=bfloat16 needs a GPU of compute capability 8.0 or newer "
            f"({gpus[0]}); use float16"
        )
    return choice
