"""A model directory in the built-in's layout, written by this product or by the built-in.

:func:`open_model` finds its files and decides its input convention;
:func:`load_for_inference` makes any such model take raw 0-255 pixels; :func:`seed_network`
turns it into a trainable network for incremental training; :func:`export_model` writes one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
from mxnet import gluon

from train import artifacts
from train.errors import ClientError
from train.formats import convention, metadata, symbolic
from train.formats.metadata import InputConvention, ModelMetadata
from train.model import Classifier, WithProbabilities, fresh_head, normalize_pixels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SavedModel:
    """A model directory's files and the input convention :func:`convention.detect` chose."""

    files: artifacts.ModelFiles
    convention: InputConvention
    network_variant: str | None = None


def open_model(model_dir: Path) -> SavedModel:
    """Locate the files of ``model_dir`` and decide its input convention.

    Raises:
        artifacts.MissingModelFiles: naming each missing file.
        metadata.BadMetadata: an unusable ``model-metadata.json``.
    """
    files = artifacts.locate_model(model_dir)
    hps_path = model_dir / artifacts.HYPERPARAMETERS_FILE
    record = metadata.read(model_dir)
    found = convention.detect(
        convention.read_graph(files.symbol),
        files.image_shape[0],
        record=record,
        product_hyperparameters=json.loads(hps_path.read_text()) if hps_path.is_file() else None,
    )
    if found.channels != files.image_shape[0]:
        raise metadata.BadMetadata(
            f"{artifacts.METADATA_FILE} says {found.channels} input channels but "
            f"{artifacts.SHAPES_FILE} says {files.image_shape[0]}"
        )
    return SavedModel(files, found, record.network_variant if record else None)


def inference_graph(saved: SavedModel) -> tuple[mx.sym.Symbol, dict[str, mx.nd.NDArray]]:
    """The model's graph on raw 0-255 pixels and its parameters (unprefixed names). A model
    that expects normalised pixels gets the normalisation prepended: this is the only place
    that adapts a model to raw input (the server's, and ``model.onnx``'s). A float16 model's
    graph and weights come in float32 (:func:`~train.formats.symbolic.load`)."""
    symbol, params = symbolic.load(saved.files.symbol, saved.files.params)
    if saved.convention.pixels == "normalized":
        data = mx.sym.var("data")
        symbol = symbol(data=normalize_pixels(mx.sym, data, saved.convention.channels))
    return symbol, params


def load_for_inference(saved: SavedModel, ctx: mx.Context) -> symbolic.GraphModel:
    """The model as a callable on raw 0-255 pixels that outputs what its graph outputs
    (probabilities), in float32 (see :func:`inference_graph`)."""
    return symbolic.GraphModel(*inference_graph(saved), ctx)


def outputs_independent_scores(saved: SavedModel) -> bool:
    """Whether the graph ends in a sigmoid (multi-label), read from the graph itself."""
    return symbolic.outputs_independent_scores(mx.sym.load(str(saved.files.symbol)))


def seed_network(
    model_dir: Path, num_classes: int, image_shape: tuple[int, int, int]
) -> Classifier:
    """Incremental training: an earlier model of this product or of the built-in algorithm.

    The graph up to the classifier becomes a trainable ``SymbolBlock`` taking raw pixels (a
    model that expected normalised pixels gets the normalisation block in front); the
    classifier keeps its weights when ``num_classes`` is unchanged and is re-initialised when
    it is not.
    """
    try:
        saved = open_model(model_dir)
    except (artifacts.MissingModelFiles, metadata.BadMetadata) as exc:
        raise ClientError(f"the 'model' channel is not a usable model: {exc}") from None
    files = saved.files
    if files.image_shape != image_shape:
        raise ClientError(
            f"image_shape {','.join(map(str, image_shape))} differs from the seed model's "
            f"{','.join(map(str, files.image_shape))}; incremental training needs the same shape"
        )
    symbol, params = symbolic.load(files.symbol, files.params)
    features, head_params = symbolic.features_block(
        symbol, params, f"the seed model's {files.params.name}"
    )
    weight, bias = (params.get(name) for name in [*head_params, None][:2])
    head = fresh_head(num_classes, in_units=0 if weight is None else weight.shape[1])
    if weight is not None and weight.shape[0] == num_classes:
        head.weight.set_data(weight)
        if bias is not None:
            head.bias.set_data(bias)
        kept = "classifier kept"
    else:
        old = None if weight is None else weight.shape[0]
        kept = f"num_classes {old} -> {num_classes}, classifier re-initialised"
    logger.info(
        "Incremental training from %s (%s); the seed model takes %s pixels",
        files.params.name,
        kept,
        saved.convention.pixels,
    )
    channels = image_shape[0] if saved.convention.pixels == "normalized" else None
    return Classifier(features, head, channels, saved.network_variant)


def export_model(
    net: gluon.HybridBlock,
    model_dir: Path,
    epoch: int,
    *,
    multi_label: bool,
    image_shape: tuple[int, int, int],
    batch_size: int,
    input_convention: InputConvention,
) -> Path:
    """Write the model files for ``epoch`` (atomically), return the params path.

    Files: ``image-classification-symbol.json``, ``image-classification-NNNN.params``,
    ``model-shapes.json`` (the built-in's) and ``model-metadata.json`` (the input convention,
    and the network variant when ``net`` records one). Parameters are saved as float32
    whatever the training precision.
    """
    wrapped = WithProbabilities(net, multi_label)
    symbol = wrapped(mx.sym.var("data"))
    arg_names = set(symbol.list_arguments())
    params = {
        ("arg:" if name in arg_names else "aux:") + name: p.data(p.list_ctx()[0]).astype("float32")
        for name, p in net.collect_params().items()
    }
    params_path = model_dir / artifacts.params_file(epoch)
    artifacts.atomic_write(params_path, lambda tmp: mx.nd.save(str(tmp), params))
    artifacts.atomic_write_bytes(model_dir / artifacts.SYMBOL_FILE, symbol.tojson().encode())
    artifacts.atomic_write_json(
        model_dir / artifacts.SHAPES_FILE, artifacts.shapes_document(image_shape, batch_size)
    )
    variant = getattr(net, "network_variant", None)
    metadata.write(model_dir, ModelMetadata(input=input_convention, network_variant=variant))
    return params_path
