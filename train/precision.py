"""Mixed precision (``precision_dtype=float16``) wired as MXNet 1.9.1's AMP documents it.

The recipe (``mxnet/contrib/amp``, MXNet's AMP tutorial), step by step:

1. ``amp.init()`` before any network is built: it wraps MXNet's operator functions so that
   graphs built from then on cast to float16 where safe. It changes the whole process, for good.
2. A graph loaded from JSON (incremental training's ``SymbolBlock``) was not built by those
   functions: :func:`convert_loaded_graphs` inserts the casts with ``amp.convert_hybrid_block``.
3. The ``Trainer`` gets ``update_on_kvstore=False``: the overflow check runs in the trainer, so a
   KVStore that updated the weights itself would apply an overflowing step first.
4. ``amp.init_trainer(trainer)`` attaches the dynamic loss scaler.
5. The backward pass runs on the scaled loss (:func:`backward`, inside ``autograd.record()``);
   ``trainer.step`` divides the scale back out, and skips the update and halves the scale when a
   gradient overflowed (doubling it again after 2,000 clean steps).

Multi-host training updates on the parameter servers (``engines.mxnet.job.MXNetEngine``), where
no overflow check happens: float16 is refused there before any data is read.
"""

from __future__ import annotations

import logging

import mxnet as mx
from mxnet import autograd, gluon

from train.errors import ClientError

logger = logging.getLogger(__name__)

FLOAT16 = "float16"


def check_multi_host(precision_dtype: str) -> None:
    """Refuse float16 for a multi-host job, before any data is read.

    Raises:
        ClientError: float16 with a parameter-server (``dist_*``) KVStore.
    """
    if precision_dtype == FLOAT16:
        raise ClientError(
            "precision_dtype=float16 cannot train on several hosts: MXNet 1.9.1 skips a step "
            "whose float16 gradients overflowed only when the update runs on the worker, and "
            "multi-host training updates on the parameter servers, where an overflow would go "
            "into the weights unchecked. Use float32 on several hosts, or float16 on one host "
            "(all its GPUs are used)"
        )


def init(precision_dtype: str) -> bool:
    """Start AMP for float16 (step 1); returns whether mixed precision is on."""
    if precision_dtype != FLOAT16:
        return False
    from mxnet.contrib import amp

    amp.init(target_dtype=FLOAT16)
    logger.info("Mixed precision: float16 compute, float32 weights, dynamic loss scaling")
    return True


def convert_loaded_graphs(
    net: gluon.HybridBlock, image_shape: tuple[int, int, int]
) -> gluon.HybridBlock:
    """``net`` with AMP's float16 casts added to the graphs loaded from a saved model (step 2):
    ``net`` itself or its direct children, when they are ``SymbolBlock``s. Their weights stay
    float32 and keep their values; other blocks are left as they are (``amp.init`` covers them).
    """
    if isinstance(net, gluon.SymbolBlock):
        return _convert(net, image_shape, "the loaded model")
    # Block keeps its children in ``_children`` (name -> block); MXNet 1.9.1 has no public API.
    for name, child in list(net._children.items()):
        if isinstance(child, gluon.SymbolBlock):
            setattr(net, name, _convert(child, image_shape, f"the loaded graph '{name}'"))
    return net


def _convert(block: gluon.SymbolBlock, image_shape: tuple[int, int, int], what: str):
    from mxnet.contrib import amp

    ctx = block.collect_params().list_ctx()
    block.hybridize()
    block(mx.nd.zeros((1, *image_shape), ctx=ctx[0]))  # builds the graph AMP converts
    logger.info("Mixed precision: float16 casts added to %s", what)
    return amp.convert_hybrid_block(block, target_dtype=FLOAT16, ctx=ctx)


def update_on_kvstore(mixed: bool, on_servers: bool) -> bool | None:
    """The Trainer's ``update_on_kvstore`` (step 3): True on parameter servers, False with
    loss scaling, else MXNet's choice."""
    if on_servers:
        return True
    return False if mixed else None


def init_trainer(trainer: gluon.Trainer) -> None:
    """Attach AMP's dynamic loss scaler to ``trainer`` (step 4)."""
    from mxnet.contrib import amp

    amp.init_trainer(trainer)


def backward(losses: list, trainer: gluon.Trainer, mixed: bool) -> None:
    """Back-propagate ``losses`` (step 5); call inside ``autograd.record()``, as the scaling
    must be recorded."""
    if not mixed:
        autograd.backward(losses)
        return
    from mxnet.contrib import amp

    with amp.scale_loss(losses, trainer) as scaled:
        autograd.backward(scaled)
