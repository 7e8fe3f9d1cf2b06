"""Where ImageNet weights come from: a ``pretrained`` channel, the baked cache, the model zoo.

The built-in algorithm downloads nothing: its weights are inside its image. This product looks,
in order, in (1) the ``pretrained`` channel (a ``.params`` file saved by GluonCV for the same
architecture), (2) the model-zoo cache baked into the image at build time
(``IC_MODEL_ZOO_DIR``), (3) a GluonCV model-zoo download. ``python -m train.pretrained --bake
DIR`` fills the cache; the Dockerfile runs it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from train.errors import ClientError

logger = logging.getLogger(__name__)

MODEL_ZOO_DIR_ENV = "IC_MODEL_ZOO_DIR"
DEFAULT_MODEL_ZOO_DIR = "~/.mxnet/models"
PRETRAINED_CHANNEL = "pretrained"
IMAGENET_LAYERS = (18, 34, 50, 101, 152)


def zoo_name(num_layers: int) -> str:
    """GluonCV model-zoo name of the ImageNet ResNet v1 with ``num_layers`` layers."""
    return f"resnet{num_layers}_v1"


def model_zoo_dir(environ: dict[str, str] | None = None) -> Path:
    """The model-zoo cache folder (``IC_MODEL_ZOO_DIR``, else GluonCV's default)."""
    env = os.environ if environ is None else environ
    return Path(env.get(MODEL_ZOO_DIR_ENV) or DEFAULT_MODEL_ZOO_DIR).expanduser()


def _from_channel(channel: Path, name: str) -> Path | None:
    """A ``.params`` file in the pretrained channel: one named after the model, or the only one."""
    if not channel.is_dir():
        return None
    files = sorted(channel.rglob("*.params"))
    named = [f for f in files if f.name.startswith(name)]
    if named:
        return named[0]
    if len(files) == 1:
        return files[0]
    if files:
        raise ClientError(
            f"the pretrained channel holds {len(files)} .params files and none is named "
            f"{name}*.params; keep one file, or name it {name}.params"
        )
    return None


def _from_cache(cache: Path, name: str) -> Path | None:
    """The cached model-zoo file ``<name>-<hash>.params`` (GluonCV's naming), if present."""
    if not cache.is_dir():
        return None
    found = sorted(cache.glob(f"{name}-*.params")) + sorted(cache.glob(f"{name}.params"))
    return found[0] if found else None


def _download(cache: Path, name: str) -> Path:
    from gluoncv.model_zoo.model_store import get_model_file

    return Path(get_model_file(name, root=str(cache)))


def locate_weights(num_layers: int, channel: Path, cache: Path) -> Path:
    """Find ImageNet weights for ResNet-``num_layers``, in the documented order.

    Raises:
        ClientError: when none of the three sources has them, listing all three.
    """
    name = zoo_name(num_layers)
    found = _from_channel(channel, name)
    if found:
        logger.info("Using pretrained weights from the %s channel: %s", PRETRAINED_CHANNEL, found)
        return found
    found = _from_cache(cache, name)
    if found:
        logger.info("Using pretrained weights from the model-zoo cache: %s", found)
        return found
    if num_layers in IMAGENET_LAYERS:
        try:
            found = _download(cache, name)
            logger.info("Downloaded pretrained weights from the GluonCV model zoo: %s", found)
            return found
        except Exception as exc:  # noqa: BLE001 - any network/IO failure means "not available"
            reason = f"the model-zoo download failed ({type(exc).__name__}: {exc})"
    else:
        reason = f"the GluonCV model zoo has no ImageNet weights for ResNet-{num_layers}"
    raise ClientError(
        f"use_pretrained_model=1 but no ImageNet weights for ResNet-{num_layers} were found: "
        f"{reason}. Provide them in one of three ways: (1) a '{PRETRAINED_CHANNEL}' channel "
        f"holding {name}.params (GluonCV format); (2) an image built with BAKE_WEIGHTS=1, which "
        f"caches them in ${MODEL_ZOO_DIR_ENV} (now {cache}); (3) network access to the GluonCV "
        f"model zoo. Or train from scratch with use_pretrained_model=0."
    )


def bake(cache: Path, layers: tuple[int, ...] = IMAGENET_LAYERS) -> list[Path]:
    """Download the ImageNet weights of every supported ResNet into ``cache`` (image build)."""
    cache.mkdir(parents=True, exist_ok=True)
    return [_download(cache, zoo_name(n)) for n in layers]


def main(argv: list[str] | None = None) -> int:
    """``python -m train.pretrained --bake DIR``: fill the model-zoo cache."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bake", type=Path, required=True, help="folder to download into")
    parser.add_argument("--layers", type=int, nargs="*", default=list(IMAGENET_LAYERS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in bake(args.bake, tuple(args.layers)):
        logger.info("cached %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
