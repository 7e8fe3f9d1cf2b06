"""RecordIO packing: bad files skipped and counted, thresholds, size rule, content-keyed cache."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import mxnet  # noqa: F401 - imported at collection: its 1.3 s import is no test's run time
import numpy as np
import pytest

from tests.datagen import make_image, write_jpeg
from train import images, records
from train.errors import ClientError
from train.lst import Entry

SETTINGS = records.PackSettings(resize=36, lossless=False, min_size=(32, 32), max_pixels=10**8)


def _good_images(
    root: Path, count: int, size=(48, 40), *, prefix: str = "img", start: int = 0
) -> list[Entry]:
    rng = random.Random(start)
    entries = []
    for i in range(start, start + count):
        label = i % 2
        rel = f"class_{label}/{prefix}_{i:03d}.jpg"
        write_jpeg(root / rel, make_image(label, rng, size))
        entries.append(Entry(i, (float(label),), rel))
    return entries


def _pack(entries, root, tmp_path, *, max_bad=0.0, settings=SETTINGS, name="train"):
    return records.pack(
        entries,
        root,
        name=name,
        settings=settings,
        cache_dir=tmp_path / "cache",
        workers=2,
        max_bad=max_bad,
    )


def _add_broken(root: Path, entries: list[Entry], broken: dict[str, bytes]) -> list[Entry]:
    out = list(entries)
    for name, data in broken.items():
        (root / "bad").mkdir(parents=True, exist_ok=True)
        (root / "bad" / name).write_bytes(data)
        out.append(Entry(len(out), (0.0,), f"bad/{name}"))
    return out


def _read_back(packed: records.PackedSet) -> list[tuple[int, float, np.ndarray]]:
    from mxnet import recordio

    reader = recordio.MXIndexedRecordIO(str(packed.idx), str(packed.rec), "r")
    out = []
    for key in reader.keys:
        header, data = recordio.unpack(reader.read_idx(key))
        out.append((header.id, float(header.label), images.decode_image(data)))
    reader.close()
    return out


def test_pack_writes_every_image_resized_with_labels_and_indices(tmp_path):
    root = tmp_path / "data"
    entries = _good_images(root, 6, size=(72, 48))
    packed = _pack(entries, root, tmp_path)
    assert packed.count == 6 and packed.skipped == []
    records_ = _read_back(packed)
    assert [(i, label) for i, label, _ in records_] == [(e.index, e.labels[0]) for e in entries]
    assert {img.shape for _, _, img in records_} == {(36, 54, 3)}  # shorter side = resize
    assert records.count_records(packed.rec) == (6, 1)


def test_validation_records_are_lossless(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
    (root).mkdir()
    (root / "a.png").write_bytes(images.encode_png(pixels))
    settings = records.PackSettings(36, True, (32, 32), 10**8)
    packed = _pack([Entry(0, (1.0,), "a.png")], root, tmp_path, settings=settings)
    assert np.array_equal(_read_back(packed)[0][2], pixels)


def test_multi_label_records_carry_every_column(tmp_path):
    root = tmp_path / "data"
    entries = _good_images(root, 2)
    multi = [Entry(e.index, (1.0, 0.0, 1.0), e.relpath) for e in entries]
    packed = _pack(multi, root, tmp_path)
    assert records.count_records(packed.rec) == (2, 3)
    assert records.read_labels(packed.rec).tolist() == [[1.0, 0.0, 1.0]] * 2


def test_bad_files_are_skipped_counted_and_named_in_the_log(
    tmp_path, caplog, broken_images, bomb_png
):
    root = tmp_path / "data"
    entries = _good_images(root, 40)
    entries = _add_broken(root, entries, {**broken_images, "bomb.png": bomb_png})
    entries.append(Entry(len(entries), (1.0,), "class_1/does_not_exist.jpg"))
    with caplog.at_level(logging.WARNING, logger="train.records"):
        packed = _pack(entries, root, tmp_path, max_bad=0.2)
    assert packed.count == 40
    skipped = dict(packed.skipped)
    assert set(skipped) == {f"bad/{n}" for n in [*broken_images, "bomb.png"]} | {
        "class_1/does_not_exist.jpg"
    }
    assert skipped["class_1/does_not_exist.jpg"] == "file not found"
    assert "too large" in skipped["bad/bomb.png"]
    assert "empty file" in skipped["bad/empty.jpg"]
    assert "truncated" in skipped["bad/truncated.jpg"]
    log = caplog.text
    assert f"Skipped 6 of {len(entries)} train images" in log
    for name in skipped:
        assert name in log
    assert {i for i, _, _ in _read_back(packed)} == set(range(40))


def test_too_many_bad_files_fail_the_job_naming_them(tmp_path, broken_images):
    root = tmp_path / "data"
    entries = _add_broken(root, _good_images(root, 20), broken_images)  # 4 of 24 bad
    with pytest.raises(ClientError) as info:
        _pack(entries, root, tmp_path, max_bad=0.1)
    message = str(info.value)
    assert "4 of 24 train images" in message
    assert "max_bad_image_fraction=0.1" in message
    assert "bad/truncated.png (truncated PNG" in message
    assert not list((tmp_path / "cache").iterdir())  # no partial record file left behind
    # The same files under a threshold they do not exceed are accepted.
    assert _pack(entries, root, tmp_path, max_bad=0.2).count == 20


def test_no_usable_images_is_an_error(tmp_path, broken_images):
    root = tmp_path / "data"
    entries = _add_broken(root, [], broken_images)
    with pytest.raises(ClientError, match="no usable train images"):
        _pack(entries, root, tmp_path, max_bad=1.0)


def test_images_smaller_than_image_shape_are_listed(tmp_path):
    root = tmp_path / "data"
    entries = _good_images(root, 3, size=(40, 40))
    entries += _good_images(root, 2, size=(20, 30), prefix="small", start=10)
    settings = records.PackSettings(None, False, (32, 32), 10**8)  # images used as they are
    with pytest.raises(ClientError) as info:
        _pack(entries, root, tmp_path, settings=settings)
    message = str(info.value)
    assert "2 train images are smaller than image_shape 32x32" in message
    assert "class_0/small_010.jpg" in message and "class_1/small_011.jpg" in message
    assert "resize" in message


def test_second_pack_reuses_the_cache_without_reading_images(tmp_path, monkeypatch, caplog):
    root = tmp_path / "data"
    entries = _good_images(root, 5)
    first = _pack(entries, root, tmp_path)

    def must_not_load(*args, **kwargs):
        raise AssertionError("cached images were decoded again")

    monkeypatch.setattr(records, "_load", must_not_load)
    with caplog.at_level(logging.INFO, logger="train.records"):
        second = _pack(entries, root, tmp_path)
    assert second == first
    assert "Using cached record file for train (5 images)" in caplog.text


def test_cached_pack_still_enforces_the_bad_image_threshold(tmp_path, broken_images):
    root = tmp_path / "data"
    entries = _add_broken(root, _good_images(root, 20), {"empty.jpg": b""})
    assert _pack(entries, root, tmp_path, max_bad=0.1).count == 20
    with pytest.raises(ClientError, match="max_bad_image_fraction=0.01"):
        _pack(entries, root, tmp_path, max_bad=0.01)


@pytest.mark.parametrize("change", ["image", "label", "settings"])
def test_cache_key_changes_with_content_labels_and_settings(tmp_path, change):
    root = tmp_path / "data"
    entries = _good_images(root, 3)
    settings = SETTINGS
    before = records._cache_key(entries, root, settings)
    assert records._cache_key(entries, root, settings) == before
    if change == "image":
        path = root / entries[1].relpath
        path.write_bytes(path.read_bytes() + b"\0")
    elif change == "label":
        entries[1] = Entry(entries[1].index, (5.0,), entries[1].relpath)
    else:
        settings = records.PackSettings(40, False, (32, 32), 10**8)
    assert records._cache_key(entries, root, settings) != before


def test_changed_image_is_repacked(tmp_path):
    root = tmp_path / "data"
    entries = _good_images(root, 4)
    first = _pack(entries, root, tmp_path)
    write_jpeg(root / entries[0].relpath, np.zeros((60, 60, 3), np.uint8))
    second = _pack(entries, root, tmp_path)
    assert second.rec != first.rec
    assert _read_back(second)[0][2].max() < 10  # the new, black image was packed


def test_a_users_record_file_is_held_to_max_image_pixels(tmp_path):
    """ImageRecordIter decodes a user's .rec itself: its images are checked from their
    headers while the records are counted."""
    from mxnet import recordio

    rec = tmp_path / "train.rec"
    writer = recordio.MXRecordIO(str(rec), "w")
    for index, (width, height) in enumerate([(40, 30), (120, 90)]):
        image = np.zeros((height, width, 3), np.uint8)
        writer.write(recordio.pack(recordio.IRHeader(0, 1.0, index, 0), images.encode_png(image)))
    writer.close()
    assert records.count_records(rec, max_pixels=120 * 90) == (2, 1)
    with pytest.raises(ClientError, match=r"record 1 of train.rec holds a 120x90 image"):
        records.count_records(rec, max_pixels=120 * 90 - 1)
