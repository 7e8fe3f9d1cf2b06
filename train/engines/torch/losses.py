"""The MXNet engine's losses and gradient scale, in torch.

How MXNet gets from per-sample losses to the update (``train/engine.py``):

1. each device computes per-sample losses on its slice of the host batch (Gluon's losses
   average over every axis but the batch axis), and ``autograd.backward`` runs on them with
   unit head gradients, i.e. on their *sum*;
2. the devices' gradients are summed (KVStore ``device``), and for ``dist_sync`` summed again
   over the hosts;
3. ``Trainer.step(B * step_scale)`` sets ``rescale_grad = 1 / (B * step_scale)``, ``B`` the host
   batch, ``step_scale`` the number of hosts for dist_sync (else 1): the update sees the mean
   over the global batch, however the batch was split.

In torch: back-propagate ``losses.sum()`` on each rank and give the optimizer
:func:`rescale_grad`; when a DistributedDataParallel all-reduce *averages* the gradients of
``ranks`` processes, the factor multiplies that mean back to the sum.

The formulas are Gluon's own (``SoftmaxCrossEntropyLoss``, ``SigmoidBinaryCrossEntropyLoss``
with ``from_sigmoid=False``), written with the same operators so the gradients agree even where
torch's fused ``binary_cross_entropy_with_logits`` would not: at a logit of exactly 0 Gluon's
gradient is ``-label`` (``relu`` and ``abs`` have zero slope there), not ``0.5 - label``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample ``-log_softmax(logits)[label]`` (``B`` values) for ``BxK`` logits and ``B``
    class indices (float labels, as the record iterators give them, are truncated)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(-1, labels.reshape(-1, 1).long())
    return -picked.reshape(-1)


def sigmoid_binary_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample mean over the ``K`` classes of binary cross-entropy on logits, with the
    positives of class ``k`` weighted by ``pos_weight[k]`` when given (``1xK`` or ``K``)."""
    x = logits.float()
    z = labels.reshape(x.shape).to(x.dtype)
    if pos_weight is None:
        loss = F.relu(x) - x * z + F.softplus(-x.abs())
    else:
        log_weight = 1 + (pos_weight.to(x.dtype) - 1) * z
        loss = x - x * z + log_weight * (F.softplus(-x.abs()) + F.relu(-x))
    return loss.reshape(loss.shape[0], -1).mean(dim=1)


def per_sample_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    multi_label: bool,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of ``train.engine.make_loss`` per sample. ``pos_weight`` is for the
    weighted multi-label *training* loss only: validation losses are unweighted there."""
    if multi_label:
        return sigmoid_binary_cross_entropy(logits, labels, pos_weight)
    if pos_weight is not None:
        raise ValueError("pos_weight applies to the multi-label loss only")
    return softmax_cross_entropy(logits, labels)


def rescale_grad(host_batch: int, step_scale: int = 1, averaged_ranks: int = 1) -> float:
    """The optimizer's gradient factor for ``losses.sum()`` back-propagated on each rank:
    ``1 / (host_batch * step_scale)`` as ``Trainer.step`` sets it, times ``averaged_ranks``
    when an all-reduce averages (rather than sums) the gradients of that many processes."""
    if host_batch < 1 or step_scale < 1 or averaged_ranks < 1:
        raise ValueError(
            f"batch {host_batch}, step_scale {step_scale} and ranks {averaged_ranks} must all "
            "be at least 1"
        )
    return averaged_ranks / (host_batch * step_scale)


def device_slices(batch: int, devices: int) -> list[int]:
    """Sample counts per device, as ``gluon.utils.split_and_load(even_split=False)`` splits a
    batch in ``train/engine.py`` (MXNet 1.9.1's ``split_data``): ``batch // devices`` each and
    one more on each of the first ``batch % devices``; with fewer samples than devices, one on
    each of the first ``batch`` devices (``engine._split`` never makes an empty slice)."""
    if batch < 1 or devices < 1:
        raise ValueError(f"batch {batch} and devices {devices} must both be at least 1")
    used = min(batch, devices)
    each, extra = divmod(batch, used)
    return [each + 1] * extra + [each] * (used - extra)
