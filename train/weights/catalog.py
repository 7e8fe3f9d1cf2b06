"""The one table of ImageNet ResNet weight sets this product knows, and where each file lives.

A *weight set* is one training run's weights for each depth it covers (torchvision's
``IMAGENET1K_V1``, GluonCV's ``resnet*_v1``, ...). Each file of a set may be published by several
*sources* (hosts); ``fetch`` tries them in the user's order. A checksum is what the source
publishes: torchvision file names carry the first 8 hex digits of the file's sha256, GluonCV
publishes the sha1 of the extracted ``.params`` file, and the Hugging Face Hub shows the full
sha256 of each file (``None`` where it was not known here: ``make check-weights`` prints it).
A file without a checksum is downloaded only when no source with one gives a candidate
(:func:`train.weights.fetch.attempts`), and its log lines say it is unverified.

The network must match the weights: torchvision's ResNet-50/101/152 put the stride of a
bottleneck on its 3x3 convolution, as GluonCV's ``resnet*_v1b`` do; GluonCV's ``resnet*_v1``
put it on the first 1x1 convolution. ResNet-18/34 (basic blocks) are the same network in both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

IMAGENET_DEPTHS = (18, 34, 50, 101, 152)
BOTTLENECK_DEPTHS = (50, 101, 152)
VARIANTS = ("v1", "v1b")
AUTO = "auto"

# Source names in the default order (safetensors first: read without unpickling anything).
SOURCES = ("huggingface", "pytorch", "gluoncv")

# Formats of a downloaded file.
SAFETENSORS, TORCH_PTH, GLUONCV_ZIP = "safetensors", "pth", "gluoncv-zip"


@dataclass(frozen=True)
class Checksum:
    """A published digest: ``algorithm`` (sha256 or sha1) and its hex ``value`` (maybe a prefix).

    ``of_member``: the digest is of the ``.params`` file inside the downloaded zip (GluonCV).
    """

    algorithm: str
    value: str
    of_member: bool = False

    def matches(self, hexdigest: str) -> bool:
        """True when ``hexdigest`` (full) starts with the published value."""
        return len(self.value) >= 8 and hexdigest.lower().startswith(self.value.lower())

    def describe(self) -> str:
        """How a download is checked, in words for the log: ``sha256 verified`` and the like."""
        full = len(self.value) == hashlib.new(self.algorithm).digest_size * 2
        whole = "" if full else f" prefix ({len(self.value)} hex digits)"
        member = " of the .params in the zip" if self.of_member else ""
        return f"{self.algorithm}{whole}{member} verified"


@dataclass(frozen=True)
class SourceFile:
    """One file of a weight set on one source: ``path`` is relative to the source's base URL."""

    source: str
    path: str
    fmt: str
    checksum: Checksum | None

    @property
    def verification(self) -> str:
        """How a download of this file is checked, in words for the log."""
        if self.checksum is None:
            return "UNVERIFIED: no checksum pinned"
        return self.checksum.describe()


@dataclass(frozen=True)
class WeightFile:
    """The weights of one set for one depth, with every source that publishes them."""

    set_name: str
    depth: int
    variant: str
    top1: float
    files: tuple[SourceFile, ...]

    @property
    def gluon_name(self) -> str:
        """GluonCV model-zoo name of the matching network (``resnet50_v1b``)."""
        return f"resnet{self.depth}_{self.variant}"

    @property
    def cache_name(self) -> str:
        """File name in the weights cache, in GluonCV layout: ``resnet50_v1b-torchvision_v2``."""
        return f"{self.gluon_name}-{self.set_name}.params"


@dataclass(frozen=True)
class WeightSet:
    """A family of weights: its name, licence and one-line origin."""

    name: str
    licence: str
    origin: str


WEIGHT_SETS = (
    WeightSet(
        "torchvision_v2",
        "BSD-3-Clause",
        "torchvision IMAGENET1K_V2 (new training recipe, 2021)",
    ),
    WeightSet("gluoncv_v1", "Apache-2.0", "GluonCV model zoo resnet*_v1"),
    WeightSet(
        "gluoncv_v1b",
        "Apache-2.0",
        "GluonCV model zoo resnet*_v1b (also mirrored on the Hugging Face Hub by timm)",
    ),
    WeightSet("torchvision_v1", "BSD-3-Clause", "torchvision IMAGENET1K_V1 (original recipe)"),
)
SET_NAMES = tuple(s.name for s in WEIGHT_SETS)


def _sha256(value: str | None) -> Checksum | None:
    return Checksum("sha256", value) if value else None


def _tv(pth: str, hf_repo: str, hf_sha256: str | None) -> tuple[SourceFile, ...]:
    """torchvision's ``.pth`` on its host and timm's safetensors mirror of the same weights."""
    return (
        SourceFile(
            "huggingface",
            f"timm/{hf_repo}/resolve/main/model.safetensors",
            SAFETENSORS,
            _sha256(hf_sha256),
        ),
        SourceFile("pytorch", pth, TORCH_PTH, Checksum("sha256", pth.split("-")[1][:8])),
    )


def _gluon(name: str, sha1: str) -> SourceFile:
    """A GluonCV model-zoo file: ``gluon/models/<name>-<sha1[:8]>.zip`` holding the .params."""
    return SourceFile(
        "gluoncv",
        f"gluon/models/{name}-{sha1[:8]}.zip",
        GLUONCV_ZIP,
        Checksum("sha1", sha1, of_member=True),
    )


def _timm_gluon(depth: int, sha256: str | None) -> SourceFile:
    return SourceFile(
        "huggingface",
        f"timm/resnet{depth}.gluon_in1k/resolve/main/model.safetensors",
        SAFETENSORS,
        _sha256(sha256),
    )


# fmt: off
WEIGHT_FILES = (
    # torchvision IMAGENET1K_V2 (top-1 as published by torchvision)
    WeightFile("torchvision_v2", 50, "v1b", 80.858, _tv("resnet50-11ad3fa6.pth", "resnet50.tv2_in1k", None)),  # noqa: E501
    WeightFile("torchvision_v2", 101, "v1b", 81.886, _tv("resnet101-cd907fc2.pth", "resnet101.tv2_in1k", None)),  # noqa: E501
    WeightFile("torchvision_v2", 152, "v1b", 82.284, _tv("resnet152-f82ba261.pth", "resnet152.tv2_in1k", None)),  # noqa: E501
    # GluonCV resnet*_v1 (GluonCV's published top-1; its host: reported unreachable since 2024)
    WeightFile("gluoncv_v1", 18, "v1", 70.93, (_gluon("resnet18_v1", "a0666292f0a30ff61f857b0b66efc0228eb6a54b"),)),  # noqa: E501
    WeightFile("gluoncv_v1", 34, "v1", 74.37, (_gluon("resnet34_v1", "48216ba99a8b1005d75c0f3a0c422301a0473233"),)),  # noqa: E501
    WeightFile("gluoncv_v1", 50, "v1", 77.36, (_gluon("resnet50_v1", "cc729d95031ca98cf2ff362eb57dee4d9994e4b2"),)),  # noqa: E501
    WeightFile("gluoncv_v1", 101, "v1", 78.34, (_gluon("resnet101_v1", "d988c13d6159779e907140a638c56f229634cb02"),)),  # noqa: E501
    WeightFile("gluoncv_v1", 152, "v1", 79.22, (_gluon("resnet152_v1", "acfd09703b113143af9c33898bad8b6154fd6fb0"),)),  # noqa: E501
    # GluonCV resnet*_v1b; for 18/34 the basic-block network is the same as v1's, so those load
    # into resnet18_v1 / resnet34_v1 (the timm mirror is in torchvision's layout).
    WeightFile("gluoncv_v1b", 18, "v1", 70.94, (_timm_gluon(18, "6991fcc0c58379a8496f6273b2f211e492f6af6494041fded649a482772ad2bf"),)),  # noqa: E501
    WeightFile("gluoncv_v1b", 34, "v1", 74.65, (_timm_gluon(34, None),)),
    WeightFile("gluoncv_v1b", 50, "v1b", 77.67, (_timm_gluon(50, None), _gluon("resnet50_v1b", "0ecdba34691be172036ddf244ff1b2eade75ffde"))),  # noqa: E501
    WeightFile("gluoncv_v1b", 101, "v1b", 79.20, (_timm_gluon(101, None), _gluon("resnet101_v1b", "a455932aa95cb7dcfa05fd040b9b5a5660733c39"))),  # noqa: E501
    WeightFile("gluoncv_v1b", 152, "v1b", 79.69, (_timm_gluon(152, None), _gluon("resnet152_v1b", "a5a61ee1ce5ab7c09720775b223360f3c60e211d"))),  # noqa: E501
    # torchvision IMAGENET1K_V1
    WeightFile("torchvision_v1", 18, "v1", 69.758, _tv("resnet18-f37072fd.pth", "resnet18.tv_in1k", "694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81")),  # noqa: E501
    WeightFile("torchvision_v1", 34, "v1", 73.314, _tv("resnet34-b627a593.pth", "resnet34.tv_in1k", None)),  # noqa: E501
    WeightFile("torchvision_v1", 50, "v1b", 76.130, _tv("resnet50-0676ba61.pth", "resnet50.tv_in1k", "5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888")),  # noqa: E501
    WeightFile("torchvision_v1", 101, "v1b", 77.374, _tv("resnet101-63fe2227.pth", "resnet101.tv_in1k", None)),  # noqa: E501
    WeightFile("torchvision_v1", 152, "v1b", 78.312, _tv("resnet152-394f9c45.pth", "resnet152.tv_in1k", "15897077afdf4d6334dc0c3f8e6fb483afb3faa9298c139f3c6eb29bca6ae5b2")),  # noqa: E501
)
# fmt: on


def for_depth(depth: int) -> list[WeightFile]:
    """Every weight file for ResNet-``depth``, best published ImageNet top-1 first."""
    return sorted((f for f in WEIGHT_FILES if f.depth == depth), key=lambda f: -f.top1)


def choices(depth: int, requested: str = AUTO) -> list[WeightFile]:
    """The files to try for ``requested`` (a set name, or ``auto``: all, best top-1 first).

    Raises:
        LookupError: with the reason, when there is nothing to try.
    """
    files = for_depth(depth)
    if not files:
        raise LookupError(
            f"there are no public ImageNet weights for ResNet-{depth} (only for "
            f"{', '.join(map(str, IMAGENET_DEPTHS))})"
        )
    if requested == AUTO:
        return files
    chosen = [f for f in files if f.set_name == requested]
    if not chosen:
        raise LookupError(
            f"weight set {requested} has no ResNet-{depth}; for ResNet-{depth} choose one of "
            f"{', '.join(f.set_name for f in files)} or auto"
        )
    return chosen
