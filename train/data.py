"""From SageMaker channels to packed RecordIO files and C++ data iterators.

These input layouts are recognised per channel, as the built-in algorithm (and beyond it):
``.lst`` + images (the ``train_lst`` / ``validation_lst`` channels, or a ``.lst`` inside the
image channel), an augmented manifest (``.manifest``), RecordIO (``.rec`` [+ ``.idx``]), and
class sub-folders (labels from sorted folder names). Without a validation channel a deterministic
split is carved from ``train``. Pipe-mode channels are streamed (:mod:`train.inputs`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
from dataclasses import dataclass
from pathlib import Path

from train import json_input, lst, presets, records
from train.config import TrainConfig
from train.errors import ClientError
from train.inputs import manifest, pipe_mode, stream
from train.inputs.channels import Channel, read_channels
from train.inputs.shards import PipeBatches
from train.paths import Paths

logger = logging.getLogger(__name__)

CLASS_NAME_FILES = ("classes.txt", "classes.json")


@dataclass(frozen=True)
class Source:
    """What one channel holds: a list of images under ``root``, or a RecordIO file."""

    name: str
    root: Path
    entries: list[lst.Entry] | None = None
    rec: Path | None = None
    class_names: list[str] | None = None  # from sub-folder names


@dataclass(frozen=True)
class DataSpec:
    """The packed training and validation sets, ready for :func:`record_iter`."""

    train: records.PackedSet
    validation: records.PackedSet
    num_classes: int
    class_names: list[str]
    label_width: int
    iter_resize: int | None  # resize done by the iterator (user-supplied RecordIO only)
    # Pipe mode: the train channel is streamed (train.count is then num_training_samples)
    train_stream: stream.StreamSource | None = None


def _nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(p for p in path.iterdir() if not p.name.startswith("."))


def _single(files: list[Path], what: str) -> Path:
    if len(files) > 1:
        names = ", ".join(f.name for f in files)
        raise ClientError(f"{what} holds {len(files)} files ({names}); keep exactly one")
    return files[0]


def discover(paths: Paths, name: str, cfg: TrainConfig) -> Source | None:
    """Work out what channel ``name`` (``train`` or ``validation``) holds; None if absent."""
    root, lst_dir = paths.channel(name), paths.channel(f"{name}_lst")
    if not root.exists():
        if lst_dir.exists():
            raise ClientError(
                f"the '{name}_lst' channel is given but the '{name}' channel "
                f"with its images is missing"
            )
        return None
    if not _nonempty_dir(root):
        raise ClientError(f"the '{name}' channel ({root}) is empty; upload images, .lst or .rec")
    lst_files = sorted(lst_dir.glob("*.lst")) if lst_dir.is_dir() else []
    if lst_dir.is_dir() and not lst_files:
        raise ClientError(f"the '{name}_lst' channel ({lst_dir}) holds no .lst file")
    lst_files = lst_files or sorted(root.glob("*.lst"))
    if lst_files:
        lst_path = _single(lst_files, f"the '{name}_lst' channel")
        entries = lst.read_lst(lst_path, multi_label=cfg.multi_label, num_classes=cfg.num_classes)
        logger.info("Using %s (%d images) for the %s channel", lst_path.name, len(entries), name)
        return Source(name, root, entries=entries)
    manifests = sorted(root.glob("*.manifest"))
    if manifests:
        path = _single(manifests, f"the '{name}' channel")
        channel = read_channels(paths.input_data_config).get(name, Channel(name))
        fmt = manifest.LabelFormat(cfg.multi_label, cfg.num_classes, channel.class_id_labels)
        entries = manifest.read_manifest(path, root, fmt)
        logger.info("Using %s (%d images) for the %s channel", path.name, len(entries), name)
        return Source(name, root, entries=entries)
    recs = sorted(root.glob("*.rec"))
    if recs:
        return Source(name, root, rec=_single(recs, f"the '{name}' channel"))
    folders = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if folders:
        entries, classes = lst.list_class_folders(root)
        if not entries:
            raise ClientError(f"the class sub-folders of the '{name}' channel hold no images")
        logger.info(
            "Found %d images in %d class folders in the %s channel",
            len(entries),
            len(classes),
            name,
        )
        return Source(name, root, entries=entries, class_names=classes)
    raise ClientError(
        f"the '{name}' channel holds files but no .lst list, .rec file or class sub-folders: "
        f"add the '{name}_lst' channel with a .lst file (index, label, relative path), or put "
        f"the images in one sub-folder per class"
    )


def _relabel(source: Source, classes: list[str]) -> Source:
    """Map a validation folder set onto the training classes by folder name."""
    unknown = sorted(set(source.class_names or []) - set(classes))
    if unknown:
        raise ClientError(f"validation class folders {unknown} do not exist in train")
    position = {name: i for i, name in enumerate(classes)}
    local = source.class_names or []
    entries = [
        lst.Entry(e.index, (float(position[local[e.label]]),), e.relpath)
        for e in source.entries or []
    ]
    return Source(source.name, source.root, entries=entries, class_names=classes)


def _label_folders_by_name(validation: Source, names: list[str], multi_label: bool) -> Source:
    """Validation class folders next to a training list (or RecordIO): each folder takes the
    label of the training class with the same name, never its position among the folders."""
    folders = validation.class_names or []
    if multi_label or not set(folders) <= set(names):
        raise ClientError(
            f"the 'validation_lst' channel is missing and the validation class folders "
            f"({', '.join(folders[:20])}) are not the training classes ({', '.join(names[:20])})"
            f"{'; multi_label=1 needs .lst files' if multi_label else ''}: add a "
            f"'validation_lst' channel with a .lst file, or name each validation folder after "
            f"its training class (classes.txt lists the names)"
        )
    return _relabel(validation, names)


def _num_classes(cfg: TrainConfig, train: Source, label_width: int) -> int:
    if train.class_names is not None:
        found = len(train.class_names)
    elif train.entries is not None:
        found = label_width if cfg.multi_label else 1 + max(e.label for e in train.entries)
    else:
        found = None
    if cfg.num_classes is None:
        if found is None:
            raise ClientError("num_classes is required with RecordIO input")
        logger.info("num_classes not set: using %d found in the data", found)
        return found
    if train.class_names is not None and found != cfg.num_classes:
        raise ClientError(
            f"num_classes={cfg.num_classes} but the train channel has {found} "
            f"class folders ({', '.join(train.class_names[:20])})"
        )
    return cfg.num_classes


def _user_class_names(paths: Paths, num_classes: int) -> list[str] | None:
    """Class names from a ``classes.txt`` (one per line) or ``classes.json`` (a list) in the
    train or train_lst channel."""
    for channel in ("train_lst", "train"):
        for filename in CLASS_NAME_FILES:
            path = paths.channel(channel) / filename
            if not path.is_file():
                continue
            if filename.endswith(".json"):
                try:
                    doc = json_input.loads(path.read_text())
                except json.JSONDecodeError as exc:
                    raise ClientError(f"{path} is not valid JSON: {exc}") from None
                names = doc.get("classes") if isinstance(doc, dict) else doc
                if not isinstance(names, list):
                    raise ClientError(
                        f'{path} must hold a list of class names or {{"classes": [...]}}'
                    )
            else:
                names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            if len(names) != num_classes:
                raise ClientError(f"{path} lists {len(names)} names for {num_classes} classes")
            return [str(n) for n in names]
    return None


def _pack(
    source: Source,
    cfg: TrainConfig,
    paths: Paths,
    *,
    lossless: bool,
    workers: int,
    progress: bool,
    stop: threading.Event | None,
) -> records.PackedSet:
    if source.rec is not None:
        count, _ = records.count_records(source.rec, max_pixels=cfg.max_image_pixels, stop=stop)
        idx = source.rec.with_suffix(".idx")
        return records.PackedSet(source.rec, idx, count)
    _, height, width = cfg.image_shape
    settings = records.PackSettings(
        cfg.effective_resize, lossless, (height, width), cfg.max_image_pixels
    )
    entries = list(source.entries or [])
    if not lossless:
        # Records in random order (im2rec shuffles too): lists are usually sorted by class, and
        # each multi-host worker reads a contiguous part of the file.
        random.Random(cfg.seed).shuffle(entries)
    return records.pack(
        entries,
        source.root,
        name=source.name,
        settings=settings,
        cache_dir=paths.scratch_dir() / "records",
        workers=workers,
        max_bad=cfg.max_bad_image_fraction,
        stop=stop,
        progress=progress,
    )


def _split(train: Source, cfg: TrainConfig) -> tuple[Source, Source]:
    if train.entries is None:
        raise ClientError(
            "RecordIO training data needs a 'validation' channel (.rec); "
            "a validation split is carved automatically only from images"
        )
    kept, held = lst.split_entries(train.entries, cfg.validation_fraction, cfg.seed)
    logger.info(
        "No validation channel: holding out %d of %d training images "
        "(validation_fraction=%s, seed=%d)",
        len(held),
        len(train.entries),
        cfg.validation_fraction,
        cfg.seed,
    )
    if not held:
        raise ClientError(
            "too few training images to carve a validation split; add a 'validation' channel"
        )
    return (
        Source("train", train.root, kept, class_names=train.class_names),
        Source("validation", train.root, held, class_names=train.class_names),
    )


def prepare_data(
    paths: Paths,
    cfg: TrainConfig,
    *,
    workers: int,
    progress: bool,
    stop: threading.Event | None = None,
) -> DataSpec:
    """Read the channels, validate them, pack them (or reuse the cache) and describe them.

    Raises:
        TrainingInterrupted: ``stop`` was set while images were being packed.
    """
    channels = read_channels(paths.input_data_config)
    if any(channels.get(name, Channel(name)).pipe for name in ("train", "validation")):
        return _prepare_streamed(
            paths, cfg, channels, workers=workers, progress=progress, stop=stop
        )
    train = discover(paths, "train", cfg)
    if train is None:
        raise ClientError(
            f"the 'train' channel is missing ({paths.channel('train')}); "
            f"give the job a channel named 'train'"
        )
    validation = discover(paths, "validation", cfg)
    if validation is None:
        train, validation = _split(train, cfg)
    elif train.class_names is not None and validation.class_names is not None:
        validation = _relabel(validation, train.class_names)
    width = len(train.entries[0].labels) if train.entries else 1
    num_classes = _num_classes(cfg, train, width)
    names = train.class_names or _user_class_names(paths, num_classes)
    if names is None:
        names = (
            lst.infer_class_names(train.entries or [], num_classes)
            if (train.entries and not cfg.multi_label)
            else [str(k) for k in range(num_classes)]
        )
    if train.class_names is None and validation.class_names is not None:
        validation = _label_folders_by_name(validation, names, cfg.multi_label)
    _check_labels(validation, num_classes, cfg.multi_label)
    common = dict(workers=workers, progress=progress, stop=stop)
    packed_train = _pack(train, cfg, paths, lossless=False, **common)
    packed_val = _pack(validation, cfg, paths, lossless=True, **common)
    _check_counts(cfg, packed_train.count)
    iter_resize = cfg.resize if train.rec is not None else None
    return DataSpec(
        packed_train,
        packed_val,
        num_classes,
        names,
        num_classes if cfg.multi_label else 1,
        iter_resize,
    )


def _check_labels(source: Source, num_classes: int, multi_label: bool) -> None:
    if multi_label or not source.entries:
        return
    bad = [e for e in source.entries if e.label >= num_classes]
    if bad:
        raise ClientError(
            f"the {source.name} list has label {bad[0].label} ({bad[0].relpath}),"
            f" not below num_classes={num_classes}"
        )


def _check_counts(cfg: TrainConfig, count: int) -> None:
    if count < cfg.mini_batch_size:
        raise ClientError(
            f"the training set has {count} usable images, fewer than mini_batch_size="
            f"{cfg.mini_batch_size}; lower mini_batch_size or add images"
        )
    if cfg.num_training_samples is not None and cfg.num_training_samples != count:
        logger.warning(
            "num_training_samples=%d but the training set has %d usable images; using %d",
            cfg.num_training_samples,
            count,
            count,
        )


def record_iter(
    packed: records.PackedSet,
    spec: DataSpec,
    cfg: TrainConfig,
    *,
    training: bool,
    batch_size: int,
    threads: int,
    num_parts: int = 1,
    part_index: int = 0,
):
    """MXNet's C++ ``ImageRecordIter`` over a packed set: decoding and augmentation run in
    ``threads`` native threads, never in the Python training thread. It delivers raw 0-255
    pixels: the network normalises them itself (``train.model.normalize_pixels``)."""
    import mxnet as mx

    kwargs = dict(
        path_imgrec=str(packed.rec),
        data_shape=cfg.image_shape,
        batch_size=batch_size,
        label_width=spec.label_width,
        preprocess_threads=threads,
        prefetch_buffer=4,
        num_parts=num_parts,
        part_index=part_index,
    )
    if packed.idx.is_file():
        kwargs["path_imgidx"] = str(packed.idx)
    if spec.iter_resize:
        kwargs["resize"] = spec.iter_resize
    if training:
        kwargs.update(
            shuffle=packed.idx.is_file(),
            seed=cfg.seed,
            round_batch=True,
            **presets.train_augmentation(cfg.augmentation_type),
        )
    else:
        kwargs.update(shuffle=False, round_batch=False, rand_crop=False, rand_mirror=False)
    return mx.io.ImageRecordIter(**kwargs)


def _prepare_streamed(
    paths: Paths,
    cfg: TrainConfig,
    channels: dict[str, Channel],
    *,
    workers: int,
    progress: bool,
    stop: threading.Event | None,
) -> DataSpec:
    """Pipe mode: ``train`` arrives as FIFOs, one per epoch; ``validation`` (streamed or not)
    is read once and stored as File mode stores it, so validation is File mode's."""
    has_validation_dir = paths.channel("validation").exists()
    num_classes, num_samples = pipe_mode.check_settings(cfg, channels, has_validation_dir)
    validation_channel = channels.get("validation", Channel("validation"))
    if validation_channel.pipe:
        source = pipe_mode.source(paths, cfg, validation_channel, lossless=True, stop=stop)
        packed_val = stream.pack_validation(source, workers=workers)
    else:
        validation = discover(paths, "validation", cfg)
        if validation is None or validation.class_names is not None:
            raise ClientError(
                "in Pipe mode the 'validation' channel needs a .lst, .manifest or .rec file "
                "(class folders give labels by name, which a stream does not carry)"
            )
        _check_labels(validation, num_classes, cfg.multi_label)
        packed_val = _pack(
            validation, cfg, paths, lossless=True, workers=workers, progress=progress, stop=stop
        )
    train_source = pipe_mode.source(paths, cfg, channels["train"], lossless=False, stop=stop)
    train_dir = paths.channel("train")
    return DataSpec(
        records.PackedSet(train_dir, train_dir, num_samples),
        packed_val,
        num_classes,
        _user_class_names(paths, num_classes) or [str(k) for k in range(num_classes)],
        num_classes if cfg.multi_label else 1,
        cfg.resize,
        train_source,
    )


def stream_iter(
    packed: records.PackedSet,
    spec: DataSpec,
    cfg: TrainConfig,
    *,
    training: bool,
    batch_size: int,
    threads: int,
    num_parts: int = 1,
    part_index: int = 0,
) -> PipeBatches:
    """Pipe mode's :func:`record_iter` (same signature; always a training iterator) for the
    training stream: one FIFO per epoch, read in shards by File mode's ``ImageRecordIter``, each
    shard with its own augmentation seed."""
    if spec.train_stream is None or not training:
        raise ValueError("stream_iter reads the training stream of a Pipe-mode job")

    def open_shard(shard: records.PackedSet, seed: int):
        shard_cfg = dataclasses.replace(cfg, seed=seed)
        return record_iter(
            shard, spec, shard_cfg, training=True, batch_size=batch_size, threads=threads
        )

    return PipeBatches(
        spec.train_stream,
        open_shard,
        batch_size=batch_size,
        shuffle_buffer=cfg.pipe_shuffle_buffer,
        expected=packed.count,
        seed=cfg.seed,
        workers=threads,
        part=(part_index, num_parts),
    )
