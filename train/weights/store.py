"""Weight files into GluonCV-layout ``.params`` files: downloads, users' files, the host check.

Shared by the job's weight lookup, the image build's bake and the command line
(``train.pretrained``). Every result is checked to load into the GluonCV network it names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from train.weights import catalog, convert, fetch, readers


@dataclass(frozen=True)
class Weights:
    """A GluonCV-layout ``.params`` file, the network ``variant`` it fits, and its origin."""

    path: Path
    variant: str
    origin: str


def gluon_weights(path: Path, num_layers: int, origin: str) -> Weights:
    """A GluonCV ``.params`` file, its variant told from its parameter names."""
    names = list(readers.read_params(path))
    return Weights(path, convert.gluon_variant(names, num_layers), origin)


def materialise(weights: catalog.WeightFile, raw: Path, fmt: str, target: Path) -> None:
    """Move ``raw`` (a verified download in ``fmt``) to ``target`` in GluonCV layout."""
    if fmt == catalog.GLUONCV_ZIP:
        os.replace(raw, target)
        return
    read = readers.read_safetensors if fmt == catalog.SAFETENSORS else readers.read_pth
    arrays = convert.torchvision_to_gluon(read(raw), weights.depth)
    save_params(arrays, target)


def save_params(arrays: dict, target: Path) -> None:
    """Save numpy arrays as an MXNet ``.params`` file (atomically)."""
    import mxnet as mx

    from train.artifacts import atomic_write

    nd = {k: mx.nd.array(v, dtype="float32") for k, v in arrays.items()}
    atomic_write(target, lambda tmp: mx.nd.save(str(tmp), nd))


def download(
    candidates: list[catalog.WeightFile], cache: Path, bases: dict[str, str]
) -> tuple[Weights, list[fetch.Failure]]:
    """The first candidate a source gives, in :func:`fetch.attempts` order (every verifiable
    file before any unverifiable one), converted into ``cache``.

    Raises:
        fetch.FetchFailed: with every failed URL, when no candidate could be downloaded.
    """
    failures: list[fetch.Failure] = []
    for weights, source, base in fetch.attempts(candidates, bases):
        target = cache / weights.cache_name

        def install(raw: Path, source: catalog.SourceFile, weights=weights, target=target):
            materialise(weights, raw, source.fmt, target)

        try:
            got = fetch.fetch(weights, cache, {source.source: base}, install)
        except fetch.FetchFailed as exc:
            failures.extend(exc.failures)
            continue
        origin = (
            f"{weights.set_name} ({weights.top1} ImageNet top-1) from {source.source}, "
            f"{source.verification}: {got.url}"
        )
        return Weights(target, weights.variant, origin), failures
    raise fetch.FetchFailed(failures)


def convert_file(source: Path, num_layers: int, out_dir: Path) -> tuple[Path, str]:
    """A weights file from elsewhere -> ``out_dir/<gluoncv name>.params``; returns (path, name).

    The result loads with ``gluoncv.model_zoo.get_model(name).load_parameters(path)``.
    """
    arrays = readers.read_weights(source)
    names = list(arrays)
    if convert.is_torchvision_layout(names):
        arrays = convert.torchvision_to_gluon(arrays, num_layers)
        variant = convert.variant_for(num_layers)
    else:
        variant = convert.gluon_variant(names, num_layers)
    name = f"resnet{num_layers}_{variant}"
    target = out_dir / f"{name}.params"
    save_params(arrays, target)
    try:
        check_loads(target, name)
    except readers.UnreadableWeights as exc:
        target.unlink()
        raise readers.UnreadableWeights(
            f"{exc}. Is ResNet-{num_layers} the depth of {source.name}?"
        ) from None
    return target, name


def check_loads(path: Path, gluon_name: str) -> None:
    """Load ``path`` into GluonCV's ``gluon_name`` network: every parameter, right shapes.

    Raises:
        readers.UnreadableWeights: naming the mismatch.
    """
    from gluoncv.model_zoo import get_model
    from mxnet.base import MXNetError

    try:
        get_model(gluon_name).load_parameters(str(path), ignore_extra=True)
    except (AssertionError, MXNetError) as exc:
        raise readers.UnreadableWeights(
            f"{path.name} does not fit GluonCV's {gluon_name}: {str(exc).splitlines()[0][:300]}"
        ) from None


def check_sources(workdir: Path) -> int:
    """Download every catalog file from every source, verify and load it; print sha256 values.

    Returns the number of files that failed (0: every host serves what the catalog says).
    """
    bases = fetch.source_bases()
    failed = 0
    for weights in catalog.WEIGHT_FILES:
        for source in weights.files:
            if source.source not in bases:
                continue
            url = bases[source.source] + source.path
            try:
                raw = fetch.fetch_one(source, bases[source.source], workdir)
                try:
                    sha256 = fetch.file_digest(raw, "sha256")
                    target = workdir / weights.cache_name
                    materialise(weights, raw, source.fmt, target)
                    check_loads(target, weights.gluon_name)
                    target.unlink()
                finally:
                    raw.unlink(missing_ok=True)
                print(f"OK    {weights.set_name:15} {weights.depth:3} {url} sha256={sha256}")
            except Exception as exc:  # noqa: BLE001 - report every host, then fail
                failed += 1
                print(f"FAIL  {weights.set_name:15} {weights.depth:3} {url}: {fetch.describe(exc)}")
    return failed
