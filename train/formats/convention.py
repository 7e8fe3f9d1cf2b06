"""The one rule that decides a model's input convention.

Nothing else in the product guesses how pixels reach a model: the trainer (incremental training,
symbolic checkpoints) and the server (any model directory) both ask :func:`detect`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from train import artifacts
from train.formats.metadata import InputConvention, ModelMetadata

logger = logging.getLogger(__name__)

# Ops that pass ``data`` through unchanged in value: MXNet's resnet.py adds ``id`` (identity,
# stored as ``_copy``) in newer revisions, and float16 training adds a ``Cast``.
PASS_THROUGH_OPS = frozenset({"_copy", "identity", "Cast", "amp_cast"})
_TRUE = ("true", "1")


def _attrs(node: dict[str, Any]) -> dict[str, str]:
    """A node's attributes (``attrs`` since MXNet 1.0, ``param`` / ``attr`` in 0.8 files)."""
    return node.get("attrs") or node.get("param") or node.get("attr") or {}


def first_layer(graph: dict[str, Any]) -> dict[str, Any] | None:
    """The node that first transforms ``data``, past pass-through ops; None when ``data`` feeds
    several nodes or none."""
    nodes = graph["nodes"]
    current = next(
        (i for i, n in enumerate(nodes) if n["op"] == "null" and n["name"] == "data"), None
    )
    while current is not None:
        consumers = [n for n in nodes if any(inp[0] == current for inp in n.get("inputs", []))]
        if len(consumers) != 1:
            return None
        node = consumers[0]
        if node["op"] not in PASS_THROUGH_OPS:
            return node
        current = nodes.index(node)
    return None


def normalises_raw_pixels(graph: dict[str, Any]) -> bool:
    """Whether the graph starts with a ``fix_gamma`` BatchNorm on ``data`` (the built-in's
    ``bn_data``, MXNet's symbolic ResNets): it learned the statistics of raw 0-255 pixels."""
    node = first_layer(graph)
    return node is not None and node["op"] == "BatchNorm" and fixes_gamma(node)


def fixes_gamma(node: dict[str, Any]) -> bool:
    """Whether a BatchNorm node has ``fix_gamma`` (MXNet then uses gamma = 1 whatever is
    stored); true when the attribute is absent, MXNet's default."""
    return str(_attrs(node).get("fix_gamma", "True")).lower() in _TRUE


def detect(
    graph: dict[str, Any],
    channels: int,
    *,
    record: ModelMetadata | None,
    product_hyperparameters: dict[str, Any] | None,
) -> InputConvention:
    """Decide the input convention of a saved model. The rule, first match wins:

    1. ``model-metadata.json`` (``record``) is present: its ``input`` record.
    2. This product's ``hyperparameters.json`` is present without a record: a model of this
       product made before the record existed. It was trained and served on ImageNet-normalised
       pixels, resized on the shorter side to its ``resize`` and centre-cropped (stretched when
       no ``resize`` is recorded). This comes before the graph test because such a model may
       have been trained incrementally from a built-in model: its ``bn_data`` then saw
       normalised pixels, not raw ones.
    3. The graph's first layer on ``data`` (after an optional identity / ``Cast``) is a
       BatchNorm with ``fix_gamma`` (``bn_data``): a built-in-style model, raw 0-255 pixels,
       stretched to ``image_shape``, as the built-in's serving code feeds it.
    4. Anything else (no record, not this product's, no ``bn_data``): fed as the built-in's
       serving would feed any model in its layout (raw, stretched), with a warning saying how
       to declare another convention.
    """
    if record is not None:
        logger.info("Input convention from %s", artifacts.METADATA_FILE)
        return record.input
    if product_hyperparameters is not None:
        value = product_hyperparameters.get("resize")
        resize = int(value) if value not in (None, "") else None
        logger.info(
            "No model-metadata.json and this product's hyperparameters.json: a model of "
            "an earlier release, fed ImageNet-normalised pixels"
        )
        if resize is None:
            return InputConvention("normalized", channels, "stretch")
        return InputConvention("normalized", channels, "resize_crop", resize)
    if normalises_raw_pixels(graph):
        logger.info(
            "Input convention: the graph starts with a fix_gamma BatchNorm on data "
            "(built-in style): raw pixels, stretched to image_shape"
        )
        return InputConvention("raw", channels, "stretch")
    logger.warning(
        "The model has no model-metadata.json, no hyperparameters.json of this product and no "
        "bn_data layer: feeding it raw 0-255 pixels stretched to image_shape, as the built-in "
        "algorithm's serving does. If it expects other input, write a model-metadata.json "
        "(see the README, 'Coming from the built-in algorithm')"
    )
    return InputConvention("raw", channels, "stretch")


def read_graph(symbol_file: Path) -> dict[str, Any]:
    """A ``*-symbol.json`` as a JSON document (no MXNet needed)."""
    return json.loads(symbol_file.read_text())
