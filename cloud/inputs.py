"""A training job's inputs: channels, input mode, and the built-in's rules, checked before upload.

Three ways in, shared by ``oic train`` and ``oic tune``:

- **File mode** (default): ``--data`` with the output of ``oic prepare`` or channel folders
  (:func:`cloud.s3sync.plan_channels`).
- **Pipe mode, RecordIO** (``--input-mode pipe --data DIR``): ``train/`` and ``validation/``
  holding only ``.rec`` files, since SageMaker streams every object under a channel's prefix one
  after the other into the FIFO. Other channels (``model``, ``pretrained``) stay File mode.
- **Pipe mode, augmented manifests** (``--input-mode pipe --manifest FILE
  --validation-manifest FILE --attribute-names source-ref,class``): each manifest is uploaded
  and read as an ``AugmentedManifestFile`` wrapped in RecordIO records.

The built-in's Pipe-mode rules: ``num_training_samples`` is required (and must match what is
streamed), RecordIO channels are ``FullyReplicated`` (every channel here is: each host reads
all of it and trains on its own shard of every epoch), manifests name the image attribute, then
the label attribute.
"""

from __future__ import annotations

import argparse
import dataclasses
import struct
from pathlib import Path
from typing import Any

from cloud import manifests
from cloud.errors import CliError
from cloud.prepare import TRAIN_LST
from cloud.s3sync import (
    AUGMENTED_MANIFEST,
    RECORDIO,
    Channel,
    Upload,
    existing_sizes,
    plan_channels,
)
from train.config import parse_hyperparameters

FILE, PIPE = "File", "Pipe"
INPUT_MODES = {"file": FILE, "pipe": PIPE}
PIPE_CHANNELS = ("train", "validation")
RECORDIO_MAGIC = 0xCED7230A  # dmlc-core recordio.h kMagic, little-endian on disk
BUCKET_TOKEN = "{bucket}"  # in rewritten manifests until the bucket is known; not a bucket name


def channel_config(channel: Channel, bucket: str) -> dict[str, Any]:
    """The channel's entry of ``InputDataConfig``."""
    source = {
        "S3DataType": channel.data_type,
        "S3Uri": f"s3://{bucket}/{channel.key}",
        "S3DataDistributionType": "FullyReplicated",
    }
    if channel.attribute_names:
        source["AttributeNames"] = list(channel.attribute_names)
    config: dict[str, Any] = {
        "ChannelName": channel.name,
        "DataSource": {"S3DataSource": source},
        "ContentType": channel.content_type,
        "CompressionType": "None",
        "InputMode": channel.input_mode,
    }
    if channel.data_type == AUGMENTED_MANIFEST:
        config["RecordWrapperType"] = "RecordIO"
    return config


def dataset_name(args: argparse.Namespace) -> str:
    """The folder under ``PREFIX/data/``: ``--dataset``, or the name of the data folder (or of
    the folder holding the manifest)."""
    if args.dataset:
        return args.dataset
    return (args.data or args.manifest.parent).resolve().name


def plan_inputs(
    args: argparse.Namespace, hyperparameters: dict[str, str], prefix: str
) -> list[Channel]:
    """The channels to upload under the key prefix ``prefix``, every rule checked.

    Raises:
        CliError: options that do not go together, or data the built-in would reject.
    """
    mode = INPUT_MODES[args.input_mode]
    _check_options(args, mode)
    if mode == FILE:
        return plan_channels(args.data, prefix)
    cfg = parse_hyperparameters(hyperparameters)
    missing = [k for k in ("num_training_samples", "num_classes") if getattr(cfg, k) is None]
    if missing:
        raise CliError(
            f"Pipe mode needs {' and '.join(missing)} in the hyperparameters (the built-in's "
            "rule: a stream cannot be read ahead to count images or classes): set "
            "num_training_samples to the number of training images and num_classes to the "
            "number of classes"
        )
    samples = cfg.num_training_samples
    if args.manifest:
        channels, count = _manifest_channels(args, hyperparameters, prefix)
    else:
        channels, count = _recordio_channels(args.data, prefix)
    if count != samples:
        raise CliError(
            f"num_training_samples is {samples} but the training data holds {count} images: set "
            f"num_training_samples={count} in the hyperparameters file"
        )
    return channels


def _check_options(args: argparse.Namespace, mode: str) -> None:
    if args.data and args.manifest:
        raise CliError("pass either --data DIR or --manifest FILE, not both")
    if not (args.data or args.manifest):
        raise CliError("no training data: pass --data DIR (or --manifest FILE in Pipe mode)")
    if not args.manifest:
        given = [
            o
            for o in ("validation_manifest", "attribute_names", "label_format")
            if getattr(args, o)
        ]
        if given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            raise CliError(f"{flags} only go with --manifest FILE")
        return
    if mode != PIPE:
        raise CliError(
            "an augmented manifest is read in Pipe mode only (SageMaker's rule for "
            "AugmentedManifestFile channels): add --input-mode pipe"
        )
    if not args.validation_manifest:
        raise CliError(
            "the built-in trains with a validation channel: pass --validation-manifest FILE too"
        )
    if not args.attribute_names:
        raise CliError(
            "pass --attribute-names IMAGE,LABEL: the manifest's image attribute, then its label "
            "attribute (Ground Truth names it after the labelling job), e.g. source-ref,class"
        )


def _manifest_channels(
    args: argparse.Namespace, hyperparameters: dict[str, str], prefix: str
) -> tuple[list[Channel], int]:
    attributes = manifests.parse_attribute_names(args.attribute_names)
    cfg = parse_hyperparameters(hyperparameters)
    if args.label_format and not cfg.multi_label:
        raise CliError(
            f"--label-format {args.label_format} is for multi-label manifests: set multi_label=1 "
            "in the hyperparameters, or drop --label-format"
        )
    rules = manifests.LabelRules(
        cfg.multi_label, cfg.num_classes, args.label_format or manifests.MULTI_HOT
    )
    content_type = RECORDIO + (f"; label-format={args.label_format}" if args.label_format else "")
    channels, counts = [], {}
    for name, path in (("train", args.manifest), ("validation", args.validation_manifest)):
        counts[name] = manifests.check_manifest(path, attributes, rules)
        key_prefix = f"{prefix}/{name}/"
        uploads = _manifest_uploads(path, attributes[0], key_prefix)
        channels.append(
            Channel(name, key_prefix, content_type, uploads, PIPE, AUGMENTED_MANIFEST, attributes)
        )
    return channels, counts["train"]


def _manifest_uploads(path: Path, image: str, key_prefix: str) -> tuple[Upload, ...]:
    """The manifest first (its key is the channel's S3Uri), then the local images it names,
    under ``images/``; the manifest then points at them (see :func:`with_bucket`)."""
    images_prefix = f"{key_prefix}images/"
    text, local = manifests.with_uploaded_images(
        path, image, f"s3://{BUCKET_TOKEN}/{images_prefix}"
    )
    if not local:
        return (Upload(path, key_prefix + path.name),)
    images = tuple(Upload(path.parent / rel, images_prefix + rel) for rel in local)
    return (Upload(path, key_prefix + path.name, text), *images)


def with_bucket(channels: tuple[Channel, ...], bucket: str) -> tuple[Channel, ...]:
    """The channels with the bucket written into rewritten manifests (known only after the
    local checks, which run before any AWS call)."""
    token = f"s3://{BUCKET_TOKEN}/".encode()
    out = []
    for channel in channels:
        uploads = tuple(
            dataclasses.replace(u, data=u.data.replace(token, f"s3://{bucket}/".encode()))
            if u.data is not None
            else u
            for u in channel.uploads
        )
        out.append(dataclasses.replace(channel, uploads=uploads))
    return tuple(out)


def _recordio_channels(data: Path, prefix: str) -> tuple[list[Channel], int]:
    if (data / TRAIN_LST).is_file():
        raise CliError(
            f"{data} is the images + .lst layout of `oic prepare`, which trains in File mode: "
            "drop --input-mode pipe, or pack train/ and validation/ .rec files with im2rec"
        )
    channels = plan_channels(data, prefix)
    names = [c.name for c in channels]
    lists = [n for n in names if n.endswith("_lst")]
    if lists or "validation" not in names:
        raise CliError(
            f"Pipe mode streams RecordIO: {data} needs train/ and validation/ folders of .rec "
            f"files{' and no ' + ', '.join(lists) + ' (lists are File mode)' if lists else ''}"
        )
    planned = []
    for channel in channels:
        if channel.name in PIPE_CHANNELS:
            _check_recordio(channel)
            channel = dataclasses.replace(channel, input_mode=PIPE)
        planned.append(channel)
    train = next(c for c in planned if c.name == "train")
    return planned, sum(_count_records(u.path) for u in train.uploads)


def _check_recordio(channel: Channel) -> None:
    """Only RecordIO files: SageMaker streams every object of the prefix into one FIFO."""
    others = [u.path.name for u in channel.uploads if u.path.suffix != ".rec"]
    if others:
        raise CliError(
            f"in Pipe mode SageMaker streams every file of the {channel.name} channel one after "
            f"the other, so it must hold only .rec files; move {', '.join(others[:5])} out of it"
        )
    for upload in channel.uploads:
        with upload.path.open("rb") as f:
            head = f.read(4)
        if len(head) < 4 or struct.unpack("<I", head)[0] != RECORDIO_MAGIC:
            raise CliError(
                f"{upload.path} is not a RecordIO file (it does not start with the magic number "
                "0xced7230a): make it with MXNet's im2rec"
            )


def check_streamed_prefixes(s3: Any, bucket: str, channels: tuple[Channel, ...]) -> None:
    """Refuse objects left under a streamed prefix that this upload does not hold (e.g. an
    ``.idx`` from an earlier File-mode upload of the same data set): Pipe mode would stream them.
    """
    for channel in channels:
        if channel.input_mode != PIPE or channel.data_type != "S3Prefix":
            continue
        planned = {u.key for u in channel.uploads}
        stale = sorted(set(existing_sizes(s3, bucket, channel.prefix)) - planned)
        if stale:
            raise CliError(
                f"s3://{bucket}/{channel.prefix} also holds {', '.join(stale[:5])}"
                f"{' ...' if len(stale) > 5 else ''}, which Pipe mode would stream with the .rec "
                f"files: delete them (aws s3 rm s3://{bucket}/{stale[0]}) or pass --dataset NAME"
            )


def _count_records(rec: Path) -> int:
    from train.records import count_records  # imports MXNet, only for Pipe-mode RecordIO

    return count_records(rec)[0]
