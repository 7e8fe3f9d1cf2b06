"""``model-metadata.json``: what a model expects at its input, written next to its graph.

A small versioned JSON document with one record per model. Version 1 holds the input
convention and, when known, which GluonCV ResNet the network is::

    {"format_version": 1,
     "input": {"pixels": "raw", "channels": 3, "geometry": "resize_crop", "resize": 36},
     "network": {"variant": "v1b"}}

- ``pixels``: ``raw`` (0-255 values, the graph normalises them itself, as the built-in's
  ``bn_data`` does) or ``normalized`` (ImageNet mean and std removed before the graph).
- ``channels``: 3 (RGB) or 1 (gray).
- ``geometry``: ``stretch`` (resize to ``image_shape`` ignoring the aspect ratio, the built-in's
  serving) or ``resize_crop`` (shorter side to ``resize``, then a centre crop: this product's
  training-time validation and endpoint).
- ``network.variant``: ``v1`` (stride on a bottleneck's first 1x1: GluonCV's ResNet v1) or
  ``v1b`` (stride on its 3x3: torchvision's ResNet-50/101/152, whose ImageNet weights need it);
  absent for graphs this product did not build (the built-in's, symbolic checkpoints).

Later features add fields (new keys, or new top-level sections) without changing the version;
readers ignore what they do not know. The version changes only when a field changes meaning,
and a reader refuses a version newer than its own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from train import artifacts

FORMAT_VERSION = 1
PIXELS = ("raw", "normalized")
NETWORK_VARIANTS = ("v1", "v1b")
GEOMETRIES = ("stretch", "resize_crop")


class BadMetadata(ValueError):
    """``model-metadata.json`` exists but cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class InputConvention:
    """How an image becomes the model's input tensor."""

    pixels: str
    channels: int
    geometry: str
    resize: int | None = None

    def __post_init__(self) -> None:
        if self.pixels not in PIXELS:
            raise BadMetadata(f"input pixels {self.pixels!r} is not one of {', '.join(PIXELS)}")
        if self.channels not in (1, 3):
            raise BadMetadata(f"input channels {self.channels!r} is not 1 or 3")
        if self.geometry not in GEOMETRIES:
            raise BadMetadata(
                f"input geometry {self.geometry!r} is not one of {', '.join(GEOMETRIES)}"
            )
        if (self.geometry == "resize_crop") != isinstance(self.resize, int):
            raise BadMetadata(
                f"input geometry {self.geometry} with resize {self.resize!r}: resize_crop "
                "needs an integer resize (the shorter side), stretch takes none"
            )

    @property
    def crop_resize(self) -> int | None:
        """The shorter-side size for ``resize_crop``; None means stretch."""
        return self.resize if self.geometry == "resize_crop" else None


@dataclass(frozen=True)
class ModelMetadata:
    """The whole ``model-metadata.json`` document."""

    input: InputConvention
    network_variant: str | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.network_variant not in (None, *NETWORK_VARIANTS):
            raise BadMetadata(
                f"network variant {self.network_variant!r} is not one of "
                f"{', '.join(NETWORK_VARIANTS)}"
            )

    def to_document(self) -> dict[str, Any]:
        """The JSON document (plain dicts)."""
        doc: dict[str, Any] = {"format_version": self.format_version, "input": asdict(self.input)}
        if self.network_variant is not None:
            doc["network"] = {"variant": self.network_variant}
        return doc

    @classmethod
    def from_document(cls, doc: Any) -> ModelMetadata:
        """Parse a document; unknown keys are ignored (later versions add fields).

        Raises:
            BadMetadata: a missing or invalid field, or a newer ``format_version``.
        """
        if not isinstance(doc, dict) or not isinstance(doc.get("input"), dict):
            raise BadMetadata('expected a JSON object with an "input" object')
        version = doc.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise BadMetadata(f"format_version {version!r} is not a positive integer")
        if version > FORMAT_VERSION:
            raise BadMetadata(
                f"format_version {version} is newer than this version understands "
                f"({FORMAT_VERSION}); serve or train it with a newer release"
            )
        fields = doc["input"]
        try:
            convention = InputConvention(
                pixels=fields["pixels"],
                channels=fields["channels"],
                geometry=fields["geometry"],
                resize=fields.get("resize"),
            )
        except KeyError as exc:
            raise BadMetadata(f"input lacks the field {exc.args[0]!r}") from None
        network = doc.get("network")
        variant = network.get("variant") if isinstance(network, dict) else None
        return cls(input=convention, network_variant=variant, format_version=version)


def read(model_dir: Path) -> ModelMetadata | None:
    """The model's record, or None when the directory has no ``model-metadata.json``.

    Raises:
        BadMetadata: the file is there but not valid (the message names the file).
    """
    path = model_dir / artifacts.METADATA_FILE
    if not path.is_file():
        return None
    try:
        return ModelMetadata.from_document(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise BadMetadata(f"{path} is not valid JSON: {exc}") from None
    except BadMetadata as exc:
        raise BadMetadata(f"{path}: {exc}") from None


def write(model_dir: Path, metadata: ModelMetadata) -> None:
    """Write ``model-metadata.json`` atomically."""
    artifacts.atomic_write_json(model_dir / artifacts.METADATA_FILE, metadata.to_document())
