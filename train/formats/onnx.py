"""``model.onnx``: a model directory's network for ONNX Runtime (and any other ONNX tool).

The ONNX graph is the one the server runs (:func:`train.formats.model_dir.inference_graph`):
raw 0-255 pixels in (``data``, ``N x C x H x W`` float32, the batch axis dynamic), what the
MXNet graph outputs out (``probabilities``: softmax, or sigmoid scores for multi-label models),
the weights as initializers. It works for this product's models and for the built-in algorithm's.

What MXNet 1.9.1's exporter gets wrong is handled here:

- it ignores ``fix_gamma`` and exports the stored gamma of such a BatchNorm, which MXNet itself
  treats as 1 (the built-in's ``bn_data``: weight decay moves the stored value away from 1), so
  those gammas are set to 1 before the export;
- its opset-13 ``SoftmaxOutput`` converter fails on the built-in's graphs (it looks up the
  label input it skipped), so training output operators are replaced by their forward pass
  first (:func:`~train.formats.symbolic.without_loss_head`);
- it stamps the model with the newest opset of the installed ``onnx`` while writing nodes in
  opset 12/13 form (``Split`` without sizes, for one), so the graph is built and declared at
  opset :data:`OPSET` explicitly.

It lists every weight as a graph input too; they are removed, so ONNX Runtime can fold
constants. The file's metadata (``metadata_props``) records the input convention, the class
names and the params file it was made from (name and sha256), so a reader of ``model.onnx``
alone knows what to feed it, and the server knows whether it is current.

Command line (a model directory, or a ``model.tar.gz`` of this product or of the built-in)::

    python -m train.formats.onnx MODEL_DIR_OR_TARBALL [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tarfile
import tempfile
from pathlib import Path

import mxnet as mx
import numpy as np
import onnx

from train import artifacts
from train.formats import convention, metadata, model_dir, symbolic
from train.formats.metadata import ModelMetadata

logger = logging.getLogger(__name__)

# ONNX opset 13: MXNet 1.9.1's newest converters; run by ONNX Runtime 1.6 and later, and by
# TensorRT, OpenVINO and the other common ONNX consumers.
OPSET = 13
INPUT = "data"
OUTPUT = "probabilities"
# Keys of the file's metadata_props.
META_CONVENTION = "model_metadata"  # the model-metadata.json document
META_CLASSES = "classes"  # JSON list of class names (absent: class indices)
META_SOURCE = "source_params"
META_SOURCE_SHA256 = "source_params_sha256"


class ExportError(RuntimeError):
    """The model cannot be written as ONNX; the message says why."""


def sha256_of(path: Path) -> str:
    """The file's sha256 as hex (identifies the params file an ONNX file was made from)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def with_fixed_gammas(
    symbol: mx.sym.Symbol, params: dict[str, mx.nd.NDArray]
) -> dict[str, mx.nd.NDArray]:
    """``params`` with the gamma of every ``fix_gamma`` BatchNorm set to 1, as MXNet computes
    it whatever is stored."""
    graph = symbolic.nodes(symbol)
    fixed = dict(params)
    for node in graph:
        if node["op"] == "BatchNorm" and convention.fixes_gamma(node):
            gamma = graph[node["inputs"][1][0]]["name"]
            if gamma in fixed:
                fixed[gamma] = mx.nd.ones_like(fixed[gamma])
    return fixed


def _graph_proto(symbol: mx.sym.Symbol, params: dict, image_shape: tuple[int, int, int]):
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph  # registers the converters

    extra = [name for name in symbol.list_inputs() if name not in params and name != INPUT]
    if extra:
        raise ExportError(f"the graph has inputs besides {INPUT!r}: {', '.join(extra)}")
    try:
        return MXNetGraph().create_onnx_graph_proto(
            symbol,
            params,
            in_shapes=[(1, *image_shape)],
            in_types=[onnx.TensorProto.FLOAT],
            opset_version=OPSET,
            dynamic=True,
            dynamic_input_shapes=[("N", *image_shape)],
        )
    except (AttributeError, NotImplementedError, mx.base.MXNetError) as exc:
        raise ExportError(f"MXNet's ONNX exporter cannot convert this graph: {exc}") from exc


def _tidy(graph: onnx.GraphProto) -> None:
    """Weights out of the graph inputs, unused constants out, the output named
    :data:`OUTPUT`.

    Raises:
        ExportError: the graph has several outputs.
    """
    weights = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if len(graph.output) != 1:
        names = ", ".join(o.name for o in graph.output)
        raise ExportError(f"the graph has {len(graph.output)} outputs ({names}), expected one")
    (output,) = graph.output
    for node in graph.node:
        node.output[:] = [OUTPUT if name == output.name else name for name in node.output]
    output.name = OUTPUT


def to_onnx(saved: model_dir.SavedModel) -> onnx.ModelProto:
    """The model as an ONNX model (checked with ``onnx.checker``).

    Raises:
        ExportError: the graph uses an operator MXNet's exporter cannot convert, or has
            inputs besides ``data`` or several outputs.
    """
    symbol, params = model_dir.inference_graph(saved)
    symbol = symbolic.without_loss_head(symbol)
    graph = _graph_proto(symbol, with_fixed_gammas(symbol, params), saved.files.image_shape)
    _tidy(graph)
    model = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="open-image-classification",
        doc_string="Image classifier: raw 0-255 pixels NxCxHxW in, probabilities out",
    )
    files = saved.files
    record = ModelMetadata(input=saved.convention, network_variant=saved.network_variant)
    props = {
        META_CONVENTION: json.dumps(record.to_document(), sort_keys=True),
        META_SOURCE: files.params.name,
        META_SOURCE_SHA256: sha256_of(files.params),
    }
    if files.classes is not None:
        props[META_CLASSES] = json.dumps(files.classes)
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def made_from(model: onnx.ModelProto, params_file: Path) -> bool:
    """Whether ``model`` was exported from ``params_file`` (same name and sha256)."""
    props = {p.key: p.value for p in model.metadata_props}
    if props.get(META_SOURCE) != params_file.name:
        return False
    return props.get(META_SOURCE_SHA256) == sha256_of(params_file)


def current_onnx(saved: model_dir.SavedModel) -> onnx.ModelProto:
    """The directory's ``model.onnx`` when it was made from its newest params file, else the
    model converted now (in memory: the model directory may be read-only)."""
    path = saved.files.symbol.parent / artifacts.ONNX_FILE
    if path.is_file():
        model = onnx.load(str(path))
        if made_from(model, saved.files.params):
            logger.info("Using %s", path)
            return model
        logger.warning("%s was not made from %s: converting again", path, saved.files.params.name)
    else:
        logger.info("No %s next to the model: converting it now", artifacts.ONNX_FILE)
    return to_onnx(saved)


def write(directory: Path, out: Path | None = None) -> Path:
    """Export the model in ``directory`` to ``out`` (default: its ``model.onnx``), atomically.

    Raises:
        artifacts.MissingModelFiles, metadata.BadMetadata: not a usable model directory.
        ExportError: the graph cannot be converted.
    """
    saved = model_dir.open_model(directory)
    model = to_onnx(saved)
    target = out or directory / artifacts.ONNX_FILE
    artifacts.atomic_write_bytes(target, model.SerializeToString())
    return target


def self_check(model: onnx.ModelProto, saved: model_dir.SavedModel) -> float:
    """Largest difference between ONNX Runtime's and MXNet's outputs on random pixels (batch
    2): the command prints it, so a user sees the conversion is faithful."""
    import onnxruntime

    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (2, *saved.files.image_shape)).astype(np.float32)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    ours = session.run(None, {INPUT: batch})[0]
    theirs = model_dir.load_for_inference(saved, mx.cpu())(mx.nd.array(batch)).asnumpy()
    return float(np.abs(ours - theirs).max())


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.formats.onnx",
        description="Convert a model of this product or of SageMaker's built-in "
        "image-classification algorithm (a model directory or its model.tar.gz) to ONNX.",
    )
    parser.add_argument("model", type=Path, help="model directory or model.tar.gz")
    parser.add_argument(
        "--out", type=Path, help="ONNX file to write (default: model.onnx beside the input)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    source: Path = args.model
    if not source.exists():
        parser.error(f"{source} does not exist")
    with tempfile.TemporaryDirectory() as scratch:
        directory = source
        if source.is_file():
            if not tarfile.is_tarfile(source):
                parser.error(f"{source} is neither a model directory nor a model.tar.gz")
            directory = Path(scratch)
            with tarfile.open(source) as tar:
                tar.extractall(directory, filter="data")
        out = args.out or (source if source.is_dir() else source.parent) / artifacts.ONNX_FILE
        try:
            saved = model_dir.open_model(directory)
            model = to_onnx(saved)
        except (artifacts.MissingModelFiles, metadata.BadMetadata, ExportError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except mx.base.MXNetError as exc:
            print(f"error: cannot read the model in {source}: {exc}", file=sys.stderr)
            return 1
        artifacts.atomic_write_bytes(out, model.SerializeToString())
        diff = self_check(model, saved)
    shape = "x".join(map(str, saved.files.image_shape))
    print(
        f"wrote {out}: input {INPUT!r} Nx{shape} float32, raw 0-255 pixels "
        f"({saved.convention.geometry}); opset {OPSET}; ONNX Runtime vs MXNet max abs "
        f"difference {diff:.1e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main())
