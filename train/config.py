"""Hyperparameters: the built-in algorithm's names, string encodings, defaults and ranges.

SageMaker hands every value over as a string (``hyperparameters.json``), and the two SDK
versions spell booleans differently (``True`` / ``true``), so each field has one parser and one
validator, applied up front: an unknown key or a bad value fails before any data is read, with a
message naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from train import json_input
from train.errors import ClientError
from train.presets import AUGMENTATION_TYPES, default_resize
from train.weights import catalog

logger = logging.getLogger(__name__)

LARGE_IMAGE_LAYERS = (18, 34, 50, 101, 152, 200)
SMALL_IMAGE_LAYERS = (20, 32, 44, 56, 110)
OPTIMIZERS = ("sgd", "adam", "rmsprop", "nag")
KV_STORES = ("dist_sync", "dist_async")
PRECISIONS = ("float32", "float16", "bfloat16")
TRAINING_ENGINES = ("auto", "mxnet", "pytorch")

# Keys the SageMaker SDKs and toolkits add for their own use; accepted and ignored.
RESERVED_PREFIXES = ("sagemaker_", "_tuning_objective_metric")


def _strip(raw: Any) -> str:
    """A hyperparameter value as text: JSON-quoted strings (Framework estimators) unquoted."""
    text = str(raw).strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text


def parse_bool(raw: Any) -> bool:
    """``True``/``true``/``1``/``yes`` and their negatives, as both SDK versions send them."""
    text = _strip(raw).lower()
    if text in ("true", "1", "yes", "1.0"):
        return True
    if text in ("false", "0", "no", "0.0"):
        return False
    raise ValueError("expected a boolean: True/False, true/false or 1/0")


def parse_int(raw: Any) -> int:
    """An integer, also accepting ``'10.0'`` (some tools write ints as floats)."""
    text = _strip(raw)
    try:
        return int(text)
    except ValueError:
        as_float = float(text)
        if not as_float.is_integer():
            raise ValueError("expected a whole number") from None
        return int(as_float)


def parse_float(raw: Any) -> float:
    """A float."""
    return float(_strip(raw))


def parse_str(raw: Any) -> str:
    """A string, with JSON quotes removed."""
    return _strip(raw)


def parse_image_shape(raw: Any) -> tuple[int, int, int]:
    """``'3,224,224'`` to ``(3, 224, 224)``; a bare ``'224'`` means ``3,224,224``."""
    parts = [p.strip() for p in _strip(raw).strip("()[]").split(",") if p.strip()]
    values = tuple(int(p) for p in parts)
    if len(values) == 1:
        values = (3, values[0], values[0])
    if len(values) != 3:
        raise ValueError("expected 'channels,height,width', e.g. '3,224,224'")
    return values  # type: ignore[return-value]


def parse_epoch_list(raw: Any) -> tuple[int, ...]:
    """``'10, 20'`` to ``(10, 20)``: the epochs at which the learning rate is multiplied."""
    parts = [p.strip() for p in _strip(raw).strip("[]").split(",") if p.strip()]
    return tuple(int(p) for p in parts)


@dataclass(frozen=True)
class Spec:
    """How one hyperparameter is parsed and checked, and what it does."""

    parse: Callable[[Any], Any]
    check: Callable[[Any], bool]
    allowed: str
    help: str


def _in(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


def _positive(v: Any) -> bool:
    return v > 0


def _one_of(options: tuple[Any, ...]) -> Callable[[Any], bool]:
    return lambda v: v in options


def _always(_: Any) -> bool:
    return True


SPECS: dict[str, Spec] = {
    "num_classes": Spec(
        parse_int,
        _positive,
        "a positive integer",
        "number of output classes (inferred from the data when omitted)",
    ),
    "num_training_samples": Spec(
        parse_int,
        _positive,
        "a positive integer",
        "number of training images (the real count wins if it differs)",
    ),
    "augmentation_type": Spec(
        parse_str,
        _one_of(AUGMENTATION_TYPES),
        "one of " + ", ".join(AUGMENTATION_TYPES),
        "random crop+flip, plus colour jitter, plus affine jitter",
    ),
    "beta_1": Spec(parse_float, _in(0, 1), "a float in [0, 1]", "adam beta_1"),
    "beta_2": Spec(parse_float, _in(0, 1), "a float in [0, 1]", "adam beta_2"),
    "checkpoint_frequency": Spec(
        parse_int,
        _positive,
        "a positive integer <= epochs",
        "keep a model every N epochs instead of only the best one",
    ),
    "early_stopping": Spec(parse_bool, _always, "True or False", "stop when validation stalls"),
    "early_stopping_min_epochs": Spec(
        parse_int,
        _positive,
        "a positive integer",
        "epochs to run before early stopping may trigger",
    ),
    "early_stopping_patience": Spec(
        parse_int, _positive, "a positive integer", "epochs without improvement before stopping"
    ),
    "early_stopping_tolerance": Spec(
        parse_float,
        _in(0, 1),
        "a float in [0, 1]",
        "relative improvement below which an epoch does not count",
    ),
    "epochs": Spec(parse_int, _positive, "a positive integer", "number of training epochs"),
    "eps": Spec(parse_float, _in(0, 1), "a float in [0, 1]", "epsilon of adam and rmsprop"),
    "gamma": Spec(parse_float, _in(0, 1), "a float in [0, 1]", "decay factor of rmsprop"),
    "image_shape": Spec(
        parse_image_shape,
        lambda v: v[0] in (1, 3) and v[1] > 0 and v[2] > 0,
        "'channels,height,width' with 1 or 3 channels, e.g. '3,224,224'",
        "network input shape",
    ),
    "kv_store": Spec(
        parse_str,
        _one_of(KV_STORES),
        "dist_sync or dist_async",
        "parameter-server mode for multi-host training",
    ),
    "learning_rate": Spec(parse_float, _in(0, 1), "a float in [0, 1]", "initial learning rate"),
    "lr_scheduler_factor": Spec(
        parse_float,
        _in(0, 1),
        "a float in [0, 1]",
        "learning-rate multiplier at each scheduler step",
    ),
    "lr_scheduler_step": Spec(
        parse_epoch_list,
        lambda v: len(v) > 0 and all(e > 0 for e in v),
        "comma-separated positive epochs, e.g. '10,20'",
        "epochs at which the learning rate is multiplied by the factor",
    ),
    "mini_batch_size": Spec(
        parse_int, _positive, "a positive integer", "batch size per host (split across GPUs)"
    ),
    "momentum": Spec(parse_float, _in(0, 1), "a float in [0, 1]", "momentum of sgd and nag"),
    "multi_label": Spec(parse_bool, _always, "0 or 1", "one sigmoid per class instead of softmax"),
    "num_layers": Spec(
        parse_int,
        _one_of(LARGE_IMAGE_LAYERS + SMALL_IMAGE_LAYERS),
        "one of 18, 34, 50, 101, 152, 200 (large images) or 20, 32, 44, 56, 110 (small images)",
        "ResNet depth",
    ),
    "optimizer": Spec(
        parse_str, _one_of(OPTIMIZERS), "one of " + ", ".join(OPTIMIZERS), "optimizer"
    ),
    "precision_dtype": Spec(
        parse_str,
        _one_of(PRECISIONS),
        "float32, float16 or bfloat16",
        "float16 = mixed precision with float32 master weights (GPU only); bfloat16 likewise "
        "without loss scaling (PyTorch engine, GPUs of compute capability 8.0 or newer)",
    ),
    "resize": Spec(
        parse_int,
        _positive,
        "a positive integer",
        "shorter side of images after resizing, before cropping",
    ),
    "top_k": Spec(
        parse_int,
        lambda v: v > 1,
        "an integer greater than 1",
        "also report top-k training accuracy",
    ),
    "use_pretrained_model": Spec(
        parse_bool, _always, "0 or 1", "start from ImageNet weights (transfer learning)"
    ),
    "use_weighted_loss": Spec(
        parse_bool, _always, "0 or 1", "class-frequency-weighted loss (multi-label only)"
    ),
    "weight_decay": Spec(parse_float, _in(0, 1), "a float in [0, 1]", "L2 weight decay"),
    # Beyond the built-in algorithm.
    "validation_fraction": Spec(
        parse_float,
        lambda v: 0 < v < 1,
        "a float in (0, 1)",
        "share of train held out when there is no validation channel",
    ),
    "seed": Spec(
        parse_int,
        lambda v: v >= 0,
        "a non-negative integer",
        "seed of the validation split, shuffling and initialisation",
    ),
    "max_bad_image_fraction": Spec(
        parse_float,
        _in(0, 1),
        "a float in [0, 1]",
        "fail when more than this share of images is unreadable",
    ),
    "max_image_pixels": Spec(
        parse_int,
        _positive,
        "a positive integer",
        "refuse images with more pixels than this (decompression bombs)",
    ),
    "preprocess_threads": Spec(
        parse_int,
        lambda v: v >= 0,
        "a non-negative integer",
        "decoding and packing threads (0 = all cores)",
    ),
    "pretrained_weights": Spec(
        parse_str,
        _one_of((catalog.AUTO, *catalog.SET_NAMES)),
        "auto or one of " + ", ".join(catalog.SET_NAMES),
        "ImageNet weight set for use_pretrained_model=1 (auto: best available for num_layers)",
    ),
    "pipe_shuffle_buffer": Spec(
        parse_int,
        _positive,
        "a positive integer",
        "Pipe mode: records held in memory to shuffle the stream (and per scratch shard)",
    ),
    "pipe_wait_timeout": Spec(
        parse_float,
        _positive,
        "a positive number of seconds",
        "Pipe mode: how long to wait for each <channel>_<n> FIFO and its first bytes",
    ),
    "training_engine": Spec(
        parse_str,
        _one_of(TRAINING_ENGINES),
        "auto, mxnet or pytorch",
        "auto: MXNet on the CPU and on GPUs it runs (compute capability 5.0-8.9), PyTorch on "
        "newer GPUs (Hopper, Blackwell); the log says which and why",
    ),
    "_ps_port": Spec(parse_int, _in(1, 65535), "a TCP port", "parameter-server scheduler port"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Validated, typed hyperparameters. Defaults are the built-in algorithm's."""

    num_classes: int | None = None  # required by the built-in; inferred here when omitted
    num_training_samples: int | None = None  # informational; the real count is used
    augmentation_type: str | None = None  # None: centre crop only
    beta_1: float = 0.9
    beta_2: float = 0.999
    checkpoint_frequency: int | None = None  # None: keep the best-validation model only
    early_stopping: bool = False
    early_stopping_min_epochs: int = 10
    early_stopping_patience: int = 5
    early_stopping_tolerance: float = 0.0
    epochs: int = 30
    eps: float = 1e-8
    gamma: float = 0.9
    image_shape: tuple[int, int, int] = (3, 224, 224)
    kv_store: str | None = None  # None: one host ('device' in the built-in's log)
    learning_rate: float = 0.1
    lr_scheduler_factor: float = 0.1
    lr_scheduler_step: tuple[int, ...] = ()
    mini_batch_size: int = 32
    momentum: float = 0.9
    multi_label: bool = False
    num_layers: int = 152  # the built-in's default; this product's sample config uses 18
    optimizer: str = "sgd"
    precision_dtype: str = "float32"
    resize: int | None = None  # None: 256/224 x the crop size for images, as-is for RecordIO
    top_k: int | None = None
    use_pretrained_model: bool = False
    use_weighted_loss: bool = False
    weight_decay: float = 0.0001
    validation_fraction: float = 0.2
    seed: int = 0
    max_bad_image_fraction: float = 0.01
    max_image_pixels: int = 100_000_000
    preprocess_threads: int = 0
    pretrained_weights: str = catalog.AUTO
    pipe_shuffle_buffer: int = 1024
    pipe_wait_timeout: float = 600.0
    training_engine: str = "auto"
    ps_port: int = 8000  # hyperparameter "_ps_port", as in the MXNet training toolkit
    ignored: tuple[str, ...] = field(default=(), compare=False)  # sagemaker_* keys seen

    @property
    def effective_resize(self) -> int:
        """``resize``, or 256/224 x the crop size when it is not given (images are packed at
        this size and the server resizes to it)."""
        return self.resize or default_resize(self.image_shape[1], self.image_shape[2])

    @property
    def small_images(self) -> bool:
        """True for the CIFAR-style ResNets (20, 32, 44, 56, 110 layers)."""
        return self.num_layers in SMALL_IMAGE_LAYERS

    def to_hyperparameters(self) -> dict[str, str]:
        """The resolved configuration as a SageMaker-style string map (for the model dir)."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            if f.name == "ignored":
                continue
            value = getattr(self, f.name)
            key = "_ps_port" if f.name == "ps_port" else f.name
            if value is None or value == ():
                continue
            if isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                value = int(value)
            out[key] = str(value)
        return out


def _field_name(key: str) -> str:
    return "ps_port" if key == "_ps_port" else key


def parse_hyperparameters(raw: Mapping[str, Any]) -> TrainConfig:
    """Parse and validate a SageMaker hyperparameter map into a :class:`TrainConfig`.

    Raises:
        ClientError: listing every unknown key and every bad value at once.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    ignored: list[str] = []
    unknown: list[str] = []
    for key, raw_value in raw.items():
        if key.startswith(RESERVED_PREFIXES):
            ignored.append(key)
            continue
        spec = SPECS.get(key)
        if spec is None:
            problems.append(f"unknown hyperparameter {key!r}")
            unknown.append(key)
            continue
        if raw_value is None or _strip(raw_value) in ("", "None", "none", "null"):
            continue
        try:
            value = spec.parse(raw_value)
            ok = spec.check(value)
        except (ValueError, TypeError):
            ok = False
        if not ok:
            problems.append(
                f"hyperparameter {key}={raw_value!r} is invalid: expected {spec.allowed}"
            )
            continue
        values[_field_name(key)] = value
    problems.extend(_cross_field_problems(values))
    if unknown:  # once, last: SageMaker shows only the first 1,024 characters
        problems.append(f"valid names: {', '.join(sorted(SPECS))}")
    if problems:
        raise ClientError("Invalid hyperparameters: " + "; ".join(problems))
    return TrainConfig(**values, ignored=tuple(ignored))


def _cross_field_problems(values: Mapping[str, Any]) -> list[str]:
    """Checks that involve more than one hyperparameter."""
    cfg = TrainConfig(**values)
    problems = []
    if cfg.checkpoint_frequency is not None and cfg.checkpoint_frequency > cfg.epochs:
        problems.append(
            f"checkpoint_frequency={cfg.checkpoint_frequency} is larger than epochs={cfg.epochs}"
        )
    _, height, width = cfg.image_shape
    if cfg.resize is not None and cfg.resize < max(height, width):
        problems.append(
            f"resize={cfg.resize} is smaller than image_shape {height}x{width}: the shorter side "
            f"after resizing must be at least {max(height, width)}"
        )
    if cfg.pretrained_weights != catalog.AUTO:
        try:
            catalog.choices(cfg.num_layers, cfg.pretrained_weights)
        except LookupError as exc:
            problems.append(f"pretrained_weights={cfg.pretrained_weights}: {exc}")
    if cfg.use_weighted_loss and not cfg.multi_label:
        problems.append("use_weighted_loss=1 requires multi_label=1")
    return problems


def load_hyperparameters(text: str, source: str) -> TrainConfig:
    """Parse the JSON text of ``hyperparameters.json`` (``source`` names it in errors)."""
    try:
        raw = json_input.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ClientError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ClientError(f"{source} must hold a JSON object of name: value strings")
    return parse_hyperparameters(raw)


def log_config(cfg: TrainConfig) -> None:
    """Print the resolved parameters, as the built-in does in its ``---- Parameters ----`` block."""
    logger.info("---- Parameters ----")
    for key, value in sorted(cfg.to_hyperparameters().items()):
        logger.info("%s: %s", key, value)
    if cfg.ignored:
        logger.info("ignored SageMaker-internal hyperparameters: %s", ", ".join(cfg.ignored))
