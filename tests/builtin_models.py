"""Models of SageMaker's built-in image-classification algorithm, made independently of the product.

Nothing here imports ``train`` or ``serve``: the network is MXNet's symbolic pre-activation
ResNet written from ``builtin-model-format.md`` (``data`` -> optional ``id`` / ``Cast`` ->
``bn_data`` with fix_gamma -> ``conv0`` ... ``stageI_unitJ_*`` ... ``bn1`` / ``relu1`` / ``pool1``
/ ``flatten0`` / ``fc1`` -> ``SoftmaxOutput`` named ``softmax``), trained for real with
``mx.mod.Module`` on raw 0-255 pixels stretched to the input size, and saved as the built-in
saves it (``mx.model.save_checkpoint`` + ``model-shapes.json``). Expected answers come from plain
MXNet as a built-in user computes them (:func:`plain_mxnet_predict`).

After training ``bn_data_gamma`` is set to 0.5: MXNet ignores it (fix_gamma), but a converter that
does not (MXNet 1.9.1's ONNX exporter) gives different answers, which the tests must catch.

Every variant trains until plain MXNet scores :data:`MIN_ACCURACY` (CPU training differs between
machines and loads: thread count, oneDNN kernels; a fixed epoch count is no precondition).

:data:`FLOAT16` is a ``precision_dtype=float16`` job's model as MXNet's ``resnet.py`` builds it
with ``dtype='float16'`` (``Cast`` to float16 after ``data``, to float32 after ``fc1``). MXNet has
no float16 GEMM on the CPU, so it trains as its float32 twin and is saved as the float16 job saves
it (:func:`saved_params`); plain MXNet runs the twin with the weights cast to float32.
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
from PIL import Image

from tests.datagen import make_image

PREFIX = "image-classification"
EPS, MOMENTUM = 2e-5, 0.9
BN_DATA_GAMMA = 0.5
MIN_ACCURACY = 0.9  # every variant's precondition (plain MXNet, validation images)
MAX_ROUNDS = 4  # of ``variant.epochs`` each, before the fixture gives up


@dataclass(frozen=True)
class Variant:
    """One built-in-style model to build: structure, input and training length."""

    name: str
    num_layers: int
    size: int  # square input, height = width
    channels: int = 3
    classifier: str = "fc1"
    multi_label: bool = False  # LogisticRegressionOutput instead of SoftmaxOutput
    input_op: str | None = "id"  # "id", "cast" or None: what sits between data and bn_data
    dtype: str = "float32"  # "float16": resnet.py's dtype='float16' graph (input_op "cast")
    epochs: int = 4  # per training round
    learning_rate: float = 0.05


SMALL = Variant("small", 20, 28)
IMAGENET = Variant("imagenet", 18, 64, input_op=None, epochs=3)
FC_NAMED = Variant("fc", 20, 28, classifier="fc", input_op="cast", epochs=3)
MULTI_LABEL = Variant("multi_label", 20, 28, multi_label=True, epochs=3, learning_rate=0.1)
GRAY = Variant("gray", 20, 28, channels=1, epochs=3)
FLOAT16 = Variant("float16", 20, 28, input_op="cast", dtype="float16", epochs=3)
VARIANTS = (SMALL, IMAGENET, FC_NAMED, MULTI_LABEL, GRAY, FLOAT16)


@dataclass(frozen=True)
class Dataset:
    """Square PNG images of the generated classes (lossless, so every reader sees the same
    pixels), in SageMaker's four-channel .lst layout under ``data_dir``."""

    data_dir: Path
    num_classes: int
    train: list[tuple[Path, int]] = field(repr=False)
    validation: list[tuple[Path, int]] = field(repr=False)


def _write_channel(
    data_dir: Path, channel: str, per_class: int, num_classes: int, first: int, seed: int
) -> list[tuple[Path, int]]:
    rng = random.Random(seed)
    items, lines = [], []
    for label in range(num_classes):
        for i in range(per_class):
            side = rng.randint(40, 72)  # square: stretching equals resize + crop but for filters
            rel = f"class_{label}/{i:04d}.png"
            path = data_dir / channel / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            image = make_image(first + label, rng, (side, side))
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            items.append((path, label))
            lines.append(f"{len(lines)}\t{label}\t{rel}")
    lst = data_dir / f"{channel}_lst" / f"{channel}.lst"
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_text("\n".join(lines) + "\n")
    return items


def make_dataset(
    data_dir: Path, *, num_classes=3, train_per_class=60, val_per_class=100, first_class=0
) -> Dataset:
    """Write the training and validation channels (300 validation images by default).
    ``first_class`` shifts the generated classes, for a task the models were not trained on."""
    args = (num_classes, first_class)
    train = _write_channel(data_dir, "train", train_per_class, *args, seed=11)
    validation = _write_channel(data_dir, "validation", val_per_class, *args, seed=12)
    return Dataset(data_dir, num_classes, train, validation)


def stretched_pixels(path: Path, size: int, channels: int) -> np.ndarray:
    """What a built-in client sends its model: the file decoded to RGB (or gray ``L``),
    stretched to ``size`` x ``size``, raw 0-255 values as float32 CxHxW."""
    with Image.open(path) as opened:
        image = np.asarray(opened.convert("RGB" if channels == 3 else "L"))
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    if channels == 1:
        return image.astype(np.float32)[None]
    return image.astype(np.float32).transpose(2, 0, 1)


def _bn(x, name, fix_gamma=False):
    return mx.sym.BatchNorm(x, fix_gamma=fix_gamma, eps=EPS, momentum=MOMENTUM, name=name)


def _conv(x, filters, kernel, stride, name):
    pad = (kernel // 2, kernel // 2)
    return mx.sym.Convolution(
        x, num_filter=filters, kernel=(kernel, kernel), stride=(stride, stride), pad=pad,
        no_bias=True, name=name,
    )  # fmt: skip


def _unit(x, filters, stride, project, name):
    """A basic pre-activation unit; the projection shortcut starts from ``_relu1``."""
    act1 = mx.sym.Activation(_bn(x, f"{name}_bn1"), act_type="relu", name=f"{name}_relu1")
    conv1 = _conv(act1, filters, 3, stride, f"{name}_conv1")
    act2 = mx.sym.Activation(_bn(conv1, f"{name}_bn2"), act_type="relu", name=f"{name}_relu2")
    conv2 = _conv(act2, filters, 3, 1, f"{name}_conv2")
    shortcut = _conv(act1, filters, 1, stride, f"{name}_sc") if project else x
    return conv2 + shortcut


def resnet_symbol(variant: Variant, num_classes: int) -> mx.sym.Symbol:
    """MXNet's symbolic ResNet v2 as the built-in saves it (basic units: 18/34 and the
    small-image depths; the small-image branch for inputs up to 28 pixels)."""
    body = mx.sym.var("data")
    if variant.input_op == "id":
        body = mx.sym.identity(body, name="id")
    elif variant.input_op == "cast":
        body = mx.sym.Cast(body, dtype=variant.dtype, name="cast0")
    body = _bn(body, "bn_data", fix_gamma=True)
    if variant.size <= 28:
        units = [(variant.num_layers - 2) // 6] * 3
        filters = [16, 16, 32, 64]
        body = _conv(body, filters[0], 3, 1, "conv0")
    else:
        units = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[variant.num_layers]
        filters = [64, 64, 128, 256, 512]
        body = _conv(body, filters[0], 7, 2, "conv0")
        body = mx.sym.Activation(_bn(body, "bn0"), act_type="relu", name="relu0")
        body = mx.sym.Pooling(body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    for stage, count in enumerate(units, start=1):
        for unit in range(1, count + 1):
            stride = 2 if stage > 1 and unit == 1 else 1
            name = f"stage{stage}_unit{unit}"
            body = _unit(body, filters[stage], stride, unit == 1, name)
    body = mx.sym.Activation(_bn(body, "bn1"), act_type="relu", name="relu1")
    body = mx.sym.Pooling(body, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1")
    logits = mx.sym.FullyConnected(
        mx.sym.Flatten(body, name="flatten0"), num_hidden=num_classes, name=variant.classifier
    )
    if variant.dtype == "float16":
        logits = mx.sym.Cast(logits, dtype="float32", name="cast1")
    if variant.multi_label:
        return mx.sym.LogisticRegressionOutput(logits, name="logistic")
    return mx.sym.SoftmaxOutput(logits, name="softmax")


@dataclass(frozen=True)
class BuiltinModel:
    """A trained built-in-style model directory and what plain MXNet says about its data."""

    variant: Variant
    model_dir: Path
    epoch: int
    data: Dataset
    accuracy: float  # plain MXNet, stretched raw pixels, the validation images

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.variant.channels, self.variant.size, self.variant.size)

    @property
    def plain_symbol(self) -> mx.sym.Symbol:
        """The graph plain MXNet runs on the CPU: a float16 graph's float32 twin (MXNet has no
        float16 GEMM on the CPU), the saved graph otherwise."""
        return resnet_symbol(replace(self.variant, dtype="float32"), self.data.num_classes)

    def validation_pixels(self) -> np.ndarray:
        """Every validation image as a built-in client feeds it."""
        v = self.variant
        return np.stack([stretched_pixels(p, v.size, v.channels) for p, _ in self.data.validation])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Plain MXNet's answers for ``batch`` (see :func:`plain_mxnet_predict`)."""
        return plain_mxnet_predict(self.model_dir / PREFIX, self.epoch, batch, self.plain_symbol)


def plain_mxnet_predict(
    prefix: Path, epoch: int, batch: np.ndarray, symbol: mx.sym.Symbol | None = None
) -> np.ndarray:
    """Open a checkpoint as built-in users' scripts do (``load_checkpoint`` +
    ``Module(..., label_names=None)``) and return its outputs for ``batch``. ``symbol``
    replaces the saved graph (a float16 model's float32 twin); weights are cast to float32."""
    saved, args, auxs = mx.model.load_checkpoint(str(prefix), epoch)
    return _forward(saved if symbol is None else symbol, args, auxs, batch)


def _forward(symbol: mx.sym.Symbol, args: dict, auxs: dict, batch: np.ndarray) -> np.ndarray:
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", batch.shape)], for_training=False)
    args, auxs = ({k: v.astype("float32") for k, v in d.items()} for d in (args, auxs))
    module.set_params(args, auxs, allow_missing=True)
    module.forward(mx.io.DataBatch([mx.nd.array(batch)]), is_train=False)
    return module.get_outputs()[0].asnumpy()


def training_labels(labels: np.ndarray, variant: Variant, num_classes: int) -> np.ndarray:
    """What the model learns: class indices; for multi-label one-hot rows, plus class 1 on
    every other class-0 image so that a class-0 image's scores sum to about 1.5 (a softmax
    would force 1)."""
    if not variant.multi_label:
        return labels
    rows = np.eye(num_classes, dtype=np.float32)[labels]
    rows[(labels == 0) & (np.arange(len(labels)) % 2 == 0), 1] = 1.0
    return rows


def saved_params(symbol: mx.sym.Symbol, args: dict, auxs: dict) -> tuple[dict, dict]:
    """The parameters as MXNet saves them for ``symbol``, each in its ``infer_type`` type (a
    float16 graph: float16 convolution and FullyConnected weights), ``bn_data_gamma`` 0.5."""
    arg_types, _, aux_types = symbol.infer_type(data="float32")
    names = symbol.list_arguments() + symbol.list_auxiliary_states()
    types = dict(zip(names, arg_types + aux_types, strict=True))
    args = {**args, "bn_data_gamma": mx.nd.full(args["bn_data_gamma"].shape, BN_DATA_GAMMA)}
    return tuple({k: v.astype(types[k]) for k, v in d.items()} for d in (args, auxs))


def train_builtin_model(variant: Variant, data: Dataset, model_dir: Path) -> BuiltinModel:
    """Train ``variant`` on ``data`` with ``mx.mod.Module`` in rounds of ``variant.epochs``
    until plain MXNet scores :data:`MIN_ACCURACY` on the validation images, and save it in
    ``model_dir`` as the built-in does (the function to call for a model directory of any
    variant, :data:`FLOAT16` included).

    Raises:
        RuntimeError: the precondition still fails after :data:`MAX_ROUNDS` rounds.
    """
    mx.random.seed(7)
    np.random.seed(7)
    size, channels, classes = variant.size, variant.channels, data.num_classes
    x = np.stack([stretched_pixels(p, size, channels) for p, _ in data.train])
    y = training_labels(np.array([label for _, label in data.train]), variant, classes)
    symbol = resnet_symbol(variant, classes)
    trained = resnet_symbol(replace(variant, dtype="float32"), classes)  # no float16 GEMM on CPUs
    label_name = trained.list_arguments()[-1]  # softmax_label / logistic_label
    train_iter = mx.io.NDArrayIter(x, y, batch_size=16, shuffle=True, label_name=label_name)
    module = mx.mod.Module(trained, label_names=[label_name], context=mx.cpu())
    pixels = np.stack([stretched_pixels(p, size, channels) for p, _ in data.validation])
    truth = np.array([label for _, label in data.validation])
    fit = {
        "optimizer": "sgd",
        "optimizer_params": {"learning_rate": variant.learning_rate, "momentum": 0.9, "wd": 1e-4},
        "initializer": mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
        "eval_metric": "mse" if variant.multi_label else "acc",
    }
    epoch, accuracies = 0, []
    while len(accuracies) < MAX_ROUNDS:
        with warnings.catch_warnings():  # a later round continues: "already initialized"
            warnings.simplefilter("ignore", UserWarning)
            module.fit(train_iter, begin_epoch=epoch, num_epoch=epoch + variant.epochs, **fit)
        epoch += variant.epochs
        args, auxs = saved_params(symbol, *module.get_params())
        outputs = _forward(trained, args, auxs, pixels)
        accuracies.append(float((outputs.argmax(axis=1) == truth).mean()))
        if accuracies[-1] >= MIN_ACCURACY:
            break
    else:
        raise RuntimeError(
            f"the built-in-style {variant.name!r} model reached validation accuracies "
            f"{accuracies} after rounds of {variant.epochs} epochs, never {MIN_ACCURACY}: the "
            "generated task or the training settings in tests/builtin_models.py need revisiting"
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    mx.model.save_checkpoint(str(model_dir / PREFIX), epoch, symbol, args, auxs)
    shapes = [{"name": "data", "shape": [16, channels, size, size]}]
    (model_dir / "model-shapes.json").write_text(json.dumps(shapes))
    return BuiltinModel(variant, model_dir, epoch, data, accuracies[-1])
