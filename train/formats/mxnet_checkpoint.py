"""An MXNet symbolic checkpoint in the ``pretrained`` channel: ``PREFIX-symbol.json`` +
``PREFIX-NNNN.params``, such as the MXNet model zoo's ImageNet ResNets (``resnet-18-symbol.json``
+ ``resnet-18-0000.params``) that the built-in's transfer learning starts from, or any model a
user saved with ``mx.model.save_checkpoint``.

The graph is cut before its last FullyConnected layer and a new classifier for ``num_classes``
is added; the checkpoint's input convention (``bn_data``: raw pixels) is kept. Its depth wins
over ``num_layers``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import mxnet as mx

from train.errors import ClientError
from train.formats import convention, metadata, symbolic
from train.model import Classifier, fresh_head

logger = logging.getLogger(__name__)

SYMBOL_SUFFIX = "-symbol.json"
_PARAMS = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d{4})\.params$")


def find(channel: Path) -> tuple[Path, Path] | None:
    """``(symbol file, params file)`` of the checkpoint in ``channel``: the one
    ``*-symbol.json`` and the highest-numbered ``.params`` of the same prefix; None without a
    symbol file.

    Raises:
        ClientError: several symbol files, or none of their params files.
    """
    if not channel.is_dir():
        return None
    symbols = sorted(channel.rglob(f"*{SYMBOL_SUFFIX}"))
    if not symbols:
        return None
    if len(symbols) > 1:
        names = ", ".join(s.name for s in symbols)
        raise ClientError(f"the pretrained channel holds several symbol files ({names}); keep one")
    symbol = symbols[0]
    prefix = symbol.name[: -len(SYMBOL_SUFFIX)]
    found = [m for p in symbol.parent.iterdir() if (m := _PARAMS.match(p.name))]
    epochs = sorted(int(m["epoch"]) for m in found if m["prefix"] == prefix)
    if not epochs:
        raise ClientError(
            f"the pretrained channel holds {symbol.name} but no {prefix}-NNNN.params next to it"
        )
    return symbol, symbol.parent / f"{prefix}-{epochs[-1]:04d}.params"


def from_checkpoint(
    symbol_file: Path,
    params_file: Path,
    num_classes: int,
    image_shape: tuple[int, int, int],
    num_layers: int,
) -> Classifier:
    """The checkpoint's graph up to its classifier, with a new classifier for ``num_classes``.

    Raises:
        ClientError: unreadable files, or a graph that does not take ``image_shape`` input.
    """
    try:
        symbol, params = symbolic.load(symbol_file, params_file)
    except mx.base.MXNetError as exc:
        raise ClientError(f"cannot read the checkpoint {symbol_file.name}: {exc}") from None
    found = symbolic.depth(symbol)
    if found != num_layers:
        logger.warning(
            "The pretrained checkpoint %s has %d layers, num_layers=%d: the checkpoint wins",
            symbol_file.name,
            found,
            num_layers,
        )
    features, _ = symbolic.features_block(symbol, params, f"the checkpoint {params_file.name}")
    try:
        features(mx.nd.zeros((1, *image_shape)))
    except mx.base.MXNetError as exc:
        raise ClientError(
            f"the checkpoint {symbol_file.name} does not take {'x'.join(map(str, image_shape))} "
            f"input: {str(exc).splitlines()[0][:300]}"
        ) from None
    taken = convention.detect(
        convention.read_graph(symbol_file),
        image_shape[0],
        record=metadata.read(symbol_file.parent),
        product_hyperparameters=None,
    )
    logger.info(
        "Using the symbolic checkpoint %s for transfer learning (%s pixels)",
        params_file.name,
        taken.pixels,
    )
    channels = image_shape[0] if taken.pixels == "normalized" else None
    return Classifier(features, fresh_head(num_classes), channels)
