"""Where ImageNet weights come from: a ``pretrained`` channel, the baked cache, a download.

The built-in algorithm downloads nothing: its weights are inside its image. This product looks,
in order, in (1) the ``pretrained`` channel (a GluonCV ``.params`` file, v1 or v1b, told apart
from its content), (2) the cache baked into the image at build time (``IC_MODEL_ZOO_DIR``),
(3) the sources of ``train.weights.catalog``, in the order of ``IC_WEIGHT_SOURCES``. With
``pretrained_weights=auto`` the best published ImageNet top-1 that is available wins.

Command line (``python -m train.pretrained``):
  ``--bake DIR``: fill the cache (the Dockerfile runs it); a message, not a traceback, when the
  weights cannot be downloaded.
  ``--convert FILE --layers N --out DIR``: turn a torchvision ``.pth``, a safetensors file or a
  GluonCV ``.params`` downloaded elsewhere into the ``.params`` file the channel takes.
  ``--check-sources``: download every file of the catalog from every source and verify it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from train.errors import ClientError
from train.weights import catalog, convert, fetch, readers

logger = logging.getLogger(__name__)

MODEL_ZOO_DIR_ENV = "IC_MODEL_ZOO_DIR"
DEFAULT_MODEL_ZOO_DIR = "~/.mxnet/models"
PRETRAINED_CHANNEL = "pretrained"
IMAGENET_LAYERS = catalog.IMAGENET_DEPTHS


@dataclass(frozen=True)
class Weights:
    """A GluonCV-layout ``.params`` file, the network ``variant`` it fits, and its origin."""

    path: Path
    variant: str
    origin: str


def model_zoo_dir(environ: dict[str, str] | None = None) -> Path:
    """The weights cache folder (``IC_MODEL_ZOO_DIR``, else GluonCV's default)."""
    env = os.environ if environ is None else environ
    return Path(env.get(MODEL_ZOO_DIR_ENV) or DEFAULT_MODEL_ZOO_DIR).expanduser()


def _from_channel(channel: Path, num_layers: int) -> Path | None:
    """A ``.params`` file in the pretrained channel: one named ``resnet<N>_*``, or the only one."""
    if not channel.is_dir():
        return None
    others = sorted(p for p in channel.rglob("*") if p.suffix in (".pth", ".safetensors"))
    files = sorted(channel.rglob("*.params"))
    if others and not files:
        raise ClientError(
            f"the {PRETRAINED_CHANNEL} channel holds {others[0].name}, which must be converted "
            f"first: python -m train.pretrained --convert {others[0].name} --layers "
            f"{num_layers} --out DIR, then put DIR's .params file in the channel"
        )
    named = [f for f in files if f.name.startswith(f"resnet{num_layers}_")]
    if named:
        return named[0]
    if len(files) == 1:
        return files[0]
    if files:
        raise ClientError(
            f"the {PRETRAINED_CHANNEL} channel holds {len(files)} .params files and none is "
            f"named resnet{num_layers}_*.params; keep one file, or name it resnet{num_layers}_v1"
            ".params"
        )
    return None


def _gluon_weights(path: Path, num_layers: int, origin: str) -> Weights:
    names = list(readers.read_params(path))
    return Weights(path, convert.gluon_variant(names, num_layers), origin)


def _from_cache(cache: Path, candidates: list[catalog.WeightFile]) -> Weights | None:
    """A cached file of the first candidate, or GluonCV's own ``resnet<N>_v1-<hash>.params``."""
    for weights in candidates:
        path = cache / weights.cache_name
        if path.is_file():
            origin = f"the model-zoo cache: {path} ({weights.set_name}, {weights.top1} top-1)"
            return Weights(path, weights.variant, origin)
    if candidates and any(w.set_name == "gluoncv_v1" for w in candidates) and cache.is_dir():
        depth = candidates[0].depth
        legacy = sorted(cache.glob(f"resnet{depth}_v1-*.params"))
        if legacy:
            return _gluon_weights(legacy[0], depth, f"the model-zoo cache: {legacy[0]}")
    return None


def materialise(weights: catalog.WeightFile, raw: Path, fmt: str, target: Path) -> None:
    """Move ``raw`` (a verified download in ``fmt``) to ``target`` in GluonCV layout."""
    if fmt == catalog.GLUONCV_ZIP:
        os.replace(raw, target)
        return
    arrays = convert.torchvision_to_gluon(readers.read_weights(raw), weights.depth)
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
    """The first candidate any source gives, converted into ``cache``.

    Raises:
        fetch.FetchFailed: with every failed URL, when no candidate could be downloaded.
    """
    failures: list[fetch.Failure] = []
    for weights in candidates:
        try:
            got = fetch.fetch(weights, cache, bases)
        except fetch.FetchFailed as exc:
            failures.extend(exc.failures)
            continue
        failures.extend(got.failures)
        try:
            materialise(weights, got.path, got.source.fmt, cache / weights.cache_name)
        finally:
            got.path.unlink(missing_ok=True)
        origin = (
            f"{weights.set_name} ({weights.top1} ImageNet top-1) from {got.source.source}: "
            f"{got.url}"
        )
        return Weights(cache / weights.cache_name, weights.variant, origin), failures
    raise fetch.FetchFailed(failures)


def unreachable_message(depth: int, failures: list[fetch.Failure], *, building: bool) -> str:
    """What to do when no source gave the weights: during the image build, or in a job."""
    tried = "; ".join(map(str, failures)) or "no source configured"
    head = (
        f"Could not download ImageNet weights for ResNet-{depth}. Tried: {tried}. "
        "The GluonCV/MXNet hosts are reported unreachable since 2024; the others need internet "
        "access (and, behind a TLS-inspecting proxy, its CA certificate)."
    )
    mirror = f" A mirror: {fetch.SOURCES_ENV}=huggingface=https://your-mirror/,pytorch."
    if building:
        return (
            f"{head} Ways out: (1) build without weights, OIC_BAKE_WEIGHTS=0 docker compose "
            "build (docker build: --build-arg BAKE_WEIGHTS=0), then give weights through the "
            f"'{PRETRAINED_CHANNEL}' channel (convert a file downloaded elsewhere with python -m "
            "train.pretrained --convert FILE --layers N --out DIR) or train with "
            "use_pretrained_model=0; (2) behind a TLS-inspecting proxy, OIC_CA_BUNDLE=/path/to/"
            f"ca.pem (docker build: --secret id=ca,src=ca.pem).{mirror}"
        )
    return (
        f"{head} Ways out: (1) a '{PRETRAINED_CHANNEL}' channel holding the weights as GluonCV "
        ".params (convert a file downloaded elsewhere with python -m train.pretrained --convert "
        "FILE --layers N --out DIR); (2) use_pretrained_model=0 (train from scratch); (3) an "
        "image built with the weights baked in (BAKE_WEIGHTS=1); (4) behind a TLS-inspecting "
        f"proxy, REQUESTS_CA_BUNDLE=/path/to/ca.pem in the job's environment.{mirror}"
    )


def locate_weights(
    num_layers: int, channel: Path, cache: Path, requested: str = catalog.AUTO
) -> Weights:
    """ImageNet weights for ResNet-``num_layers``: channel, then cache, then a download.

    Raises:
        ClientError: saying why none was found and the ways out.
    """
    found = _from_channel(channel, num_layers)
    if found:
        weights = _gluon_weights(found, num_layers, f"the {PRETRAINED_CHANNEL} channel: {found}")
    else:
        try:
            candidates = catalog.choices(num_layers, requested)
        except LookupError as exc:
            raise ClientError(
                f"use_pretrained_model=1: {exc}. Give your own weights in a "
                f"'{PRETRAINED_CHANNEL}' channel, or set use_pretrained_model=0."
            ) from None
        weights = _from_cache(cache, candidates)
        if weights is None:
            try:
                weights, _ = download(candidates, cache, fetch.source_bases())
            except (fetch.FetchFailed, ValueError, OSError) as exc:
                failures = getattr(exc, "failures", [fetch.Failure("-", str(exc))])
                message = unreachable_message(num_layers, failures, building=False)
                raise ClientError(message) from None
    logger.info(
        "Using pretrained weights from %s (network variant %s)", weights.origin, weights.variant
    )
    return weights


class BakeFailed(Exception):
    """The image build could not download the weights; the message says what to do."""


def bake(
    cache: Path,
    layers: tuple[int, ...] = IMAGENET_LAYERS,
    requested: str = catalog.AUTO,
    into: Path | None = None,
) -> list[Weights]:
    """Download the default (or ``requested``) weights of each depth into ``cache``.

    ``into``: also copy the chosen files there (the image's folder), so files left in a
    persistent build cache by earlier builds do not end up in the image.
    """
    import shutil

    cache.mkdir(parents=True, exist_ok=True)
    bases = fetch.source_bases()
    chosen = []
    for depth in layers:
        candidates = catalog.choices(depth, requested)
        weights = _from_cache(cache, candidates)
        if weights is None:
            try:
                weights, _ = download(candidates, cache, bases)
            except fetch.FetchFailed as exc:
                raise BakeFailed(unreachable_message(depth, exc.failures, building=True)) from None
        logger.info("ResNet-%d: %s (%s)", depth, weights.origin, weights.path.name)
        chosen.append(weights)
    if into is not None:
        into.mkdir(parents=True, exist_ok=True)
        for weights in chosen:
            shutil.copy2(weights.path, into / weights.path.name)
    return chosen


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
    check_loads(target, name)
    return target, name


def check_loads(path: Path, gluon_name: str) -> None:
    """Load ``path`` into GluonCV's ``gluon_name`` network: every parameter, right shapes.

    Raises:
        readers.UnreadableWeights: naming the mismatch.
    """
    from gluoncv.model_zoo import get_model
    from mxnet.base import MXNetError

    try:
        get_model(gluon_name).load_parameters(str(path))
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
                print(f"FAIL  {weights.set_name:15} {weights.depth:3} {url}: {exc}")
    return failed


def main(argv: list[str] | None = None) -> int:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--bake", type=Path, metavar="DIR", help="download into this cache")
    task.add_argument("--convert", type=Path, metavar="FILE", help="convert a weights file")
    task.add_argument("--check-sources", action="store_true", help="verify every source")
    parser.add_argument("--layers", type=int, nargs="*", default=list(IMAGENET_LAYERS))
    parser.add_argument("--weights", default=catalog.AUTO, help="weight set (default: auto)")
    parser.add_argument("--into", type=Path, help="--bake: copy the chosen files here")
    parser.add_argument("--out", type=Path, help="--convert: output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.bake:
            bake(args.bake, tuple(args.layers), args.weights, args.into)
        elif args.convert:
            if len(args.layers) != 1 or not args.out:
                parser.error("--convert needs --layers N (one depth) and --out DIR")
            path, name = convert_file(args.convert, args.layers[0], args.out)
            print(f"{path}\nload with: gluoncv.model_zoo.get_model({name!r}).load_parameters(...)")
        else:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="oic-weights-check-") as tmp:
                return 1 if check_sources(Path(tmp)) else 0
    except (BakeFailed, readers.UnreadableWeights, convert.ConversionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (LookupError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
