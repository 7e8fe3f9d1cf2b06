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
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

from train.errors import ClientError
from train.weights import catalog, convert, fetch, readers, store
from train.weights.store import Weights

logger = logging.getLogger(__name__)

MODEL_ZOO_DIR_ENV = "IC_MODEL_ZOO_DIR"
DEFAULT_MODEL_ZOO_DIR = "~/.mxnet/models"
PRETRAINED_CHANNEL = "pretrained"
IMAGENET_LAYERS = catalog.IMAGENET_DEPTHS


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


def _from_cache(cache: Path, candidates: list[catalog.WeightFile]) -> Weights | None:
    """A cached file of the first candidate, or one GluonCV's own download left there
    (``resnet<N>_v1-<hash>.params``), as images built before this catalog hold."""
    for weights in candidates:
        path = cache / weights.cache_name
        if path.is_file():
            origin = f"the model-zoo cache: {path} ({weights.set_name}, {weights.top1} top-1)"
            return Weights(path, weights.variant, origin)
    if candidates and any(w.set_name == "gluoncv_v1" for w in candidates) and cache.is_dir():
        depth = candidates[0].depth
        legacy = sorted(cache.glob(f"resnet{depth}_v1-*.params")) + sorted(
            cache.glob(f"resnet{depth}_v1.params")
        )
        if legacy:
            return store.gluon_weights(legacy[0], depth, f"the model-zoo cache: {legacy[0]}")
    return None


def unreachable_message(depth: int, failures: list[fetch.Failure], *, building: bool) -> str:
    """What to do when no source gave the weights: during the image build, or in a job."""
    why = (
        "The GluonCV/MXNet hosts are reported unreachable since 2024; the others need internet "
        "access (and, behind a TLS-inspecting proxy, its CA certificate)."
    )
    convert_hint = "convert a file downloaded elsewhere: python -m train.pretrained --convert FILE"
    if building:
        tried = "".join(f"\n  {failure}" for failure in failures)
        return (
            f"Could not download ImageNet weights for ResNet-{depth}. Tried:{tried}\n{why}\n"
            "Ways out:\n"
            "  - build without weights: OIC_BAKE_WEIGHTS=0 docker compose build (docker build: "
            f"--build-arg BAKE_WEIGHTS=0), then give weights through the '{PRETRAINED_CHANNEL}' "
            f"channel ({convert_hint} --layers N --out DIR) or set use_pretrained_model=0;\n"
            "  - behind a TLS-inspecting proxy: OIC_CA_BUNDLE=/path/to/ca.pem (docker build: "
            "--secret id=ca,src=ca.pem);\n"
            "  - a mirror: OIC_WEIGHT_SOURCES=huggingface=https://mirror/,pytorch (docker build: "
            "--build-arg WEIGHT_SOURCES=...)."
        )
    tried = "; ".join(map(str, failures))
    return (
        f"use_pretrained_model=1 but no ImageNet weights for ResNet-{depth} could be downloaded. "
        f"Ways out: (1) a '{PRETRAINED_CHANNEL}' channel holding them as GluonCV .params "
        f"({convert_hint} --layers {depth} --out DIR); (2) use_pretrained_model=0 (train from "
        "scratch); (3) an image built with the weights baked in; (4) behind a TLS-inspecting "
        f"proxy, REQUESTS_CA_BUNDLE=/path/to/ca.pem in the job's environment; (5) a mirror in "
        f"{fetch.SOURCES_ENV}. {why} Tried: {tried}."
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
        weights = store.gluon_weights(
            found, num_layers, f"the {PRETRAINED_CHANNEL} channel: {found}"
        )
    else:
        try:
            candidates = catalog.choices(num_layers, requested)
        except LookupError as exc:
            raise ClientError(
                f"use_pretrained_model=1: {exc}. Give your own weights in a "
                f"'{PRETRAINED_CHANNEL}' channel, or set use_pretrained_model=0."
            ) from None
        weights = _from_cache(cache, candidates) or _download_for_job(candidates, cache)
    logger.info(
        "Using pretrained weights from %s (network variant %s)", weights.origin, weights.variant
    )
    return weights


def _download_for_job(candidates: list[catalog.WeightFile], cache: Path) -> Weights:
    """Download at run time, into the cache or, when it is read-only (a non-root container),
    into a temporary folder."""
    try:
        bases = fetch.source_bases()
    except ValueError as exc:
        raise ClientError(str(exc)) from None
    with contextlib.suppress(OSError):
        cache.mkdir(parents=True, exist_ok=True)
    if not os.access(cache, os.W_OK):
        fallback = Path(tempfile.gettempdir()) / "oic-weights"
        logger.warning("The weights cache %s is read-only; downloading into %s", cache, fallback)
        cache = fallback
    try:
        return store.download(candidates, cache, bases)[0]
    except fetch.FetchFailed as exc:
        message = unreachable_message(candidates[0].depth, exc.failures, building=False)
        raise ClientError(message) from None


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
                weights, _ = store.download(candidates, cache, bases)
            except fetch.FetchFailed as exc:
                raise BakeFailed(unreachable_message(depth, exc.failures, building=True)) from None
        logger.info("ResNet-%d: %s (%s)", depth, weights.origin, weights.path.name)
        chosen.append(weights)
    if into is not None:
        into.mkdir(parents=True, exist_ok=True)
        for weights in chosen:
            shutil.copy2(weights.path, into / weights.path.name)
    return chosen


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
            path, name = store.convert_file(args.convert, args.layers[0], args.out)
            print(f"{path}\nload with: gluoncv.model_zoo.get_model({name!r}).load_parameters(...)")
        else:
            with tempfile.TemporaryDirectory(prefix="oic-weights-check-") as tmp:
                return 1 if store.check_sources(Path(tmp)) else 0
    except (BakeFailed, readers.UnreadableWeights, convert.ConversionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (LookupError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
