""".lst reading and validation, class-folder listing and the deterministic stratified split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from train import lst
from train.errors import ClientError
from train.lst import Entry


def _write(tmp_path: Path, text: str, name: str = "train.lst") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_three_column_lines_with_int_and_float_labels(tmp_path):
    path = _write(tmp_path, "0\t1\ta/x.jpg\n1\t2.000000\tb/y.jpg\r\n\n5\t0.0\tz.png\n")
    entries = lst.read_lst(path, multi_label=False, num_classes=3)
    assert entries == [
        Entry(0, (1.0,), "a/x.jpg"),
        Entry(1, (2.0,), "b/y.jpg"),
        Entry(5, (0.0,), "z.png"),
    ]
    assert [e.label for e in entries] == [1, 2, 0]


def test_reads_multi_label_columns(tmp_path):
    path = _write(tmp_path, "0\t1.000000\t0.000000\t1.000000\timg/a.jpg\n1\t0\t1\t0\timg/b.jpg\n")
    entries = lst.read_lst(path, multi_label=True, num_classes=3)
    assert entries[0].labels == (1.0, 0.0, 1.0)
    assert entries[1].labels == (0.0, 1.0, 0.0)
    assert entries[1].relpath == "img/b.jpg"


def test_multi_label_needs_one_column_per_class(tmp_path):
    path = _write(tmp_path, "0\t1\t0\timg/a.jpg\n")
    with pytest.raises(ClientError, match=r"train\.lst:1: expected 5 tab-separated columns"):
        lst.read_lst(path, multi_label=True, num_classes=3)


def test_multi_label_values_must_be_zero_or_one(tmp_path):
    path = _write(tmp_path, "0\t1\t2\ta.jpg\n")
    with pytest.raises(ClientError, match=r"train\.lst:1: multi-label columns must be 0 or 1"):
        lst.read_lst(path, multi_label=True, num_classes=2)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("3\ta.jpg", "expected 3 tab-separated columns .* found 2"),
        ("3\t1\t1\ta.jpg", "found 4"),
        ("3 1 a.jpg", "found 1"),
        ("3\tcat\ta.jpg", "label 'cat' is not a number"),
        ("3\t1.5\ta.jpg", "label '1.5' must be a whole number"),
        ("3\t-1\ta.jpg", "label '-1' must be a whole number"),
        ("x\t1\ta.jpg", "index 'x' is not a number"),
        ("1.5\t1\ta.jpg", "index '1.5' must be a whole number"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, fragment):
    path = _write(tmp_path, f"0\t0\tok.jpg\n1\t1\tok2.jpg\n{line}\n")
    with pytest.raises(ClientError, match=rf"^train\.lst:3: .*{fragment}"):
        lst.read_lst(path, multi_label=False, num_classes=None)


def test_label_must_be_below_num_classes(tmp_path):
    path = _write(tmp_path, "0\t0\ta.jpg\n1\t3\tb.jpg\n")
    with pytest.raises(ClientError, match=r"train\.lst:2: label 3 is not below num_classes=3"):
        lst.read_lst(path, multi_label=False, num_classes=3)
    # Without num_classes the same list is accepted (num_classes is inferred later).
    assert len(lst.read_lst(path, multi_label=False, num_classes=None)) == 2


def test_duplicate_index_is_refused_naming_both_lines(tmp_path):
    path = _write(tmp_path, "0\t0\ta.jpg\n1\t1\tb.jpg\n0\t1\tc.jpg\n")
    with pytest.raises(ClientError, match=r"train\.lst:3: index 0 already used on line 1"):
        lst.read_lst(path, multi_label=False, num_classes=2)


@pytest.mark.parametrize(
    "bad_path",
    ["../../etc/passwd", "/etc/passwd", "a/../../b.jpg", "..\\..\\secret.jpg", "\\abs.jpg"],
)
def test_paths_that_leave_the_channel_root_are_refused(tmp_path, bad_path):
    path = _write(tmp_path, f"0\t0\tok.jpg\n1\t0\t{bad_path}\n")
    with pytest.raises(ClientError, match=r"train\.lst:2: path .* leaves the channel root"):
        lst.read_lst(path, multi_label=False, num_classes=1)


def test_relative_paths_with_dots_in_names_are_fine(tmp_path):
    path = _write(tmp_path, "0\t0\t./a/..b.jpg\n1\t0\tsub\\c.jpg\n")
    entries = lst.read_lst(path, multi_label=False, num_classes=1)
    assert [e.relpath for e in entries] == ["a/..b.jpg", "sub/c.jpg"]


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_list_is_refused(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(ClientError, match="has no entries"):
        lst.read_lst(path, multi_label=False, num_classes=None)


def test_write_then_read_round_trips_in_im2rec_format(tmp_path):
    entries = [Entry(0, (1.0,), "a/x.jpg"), Entry(7, (0.0,), "b/y.jpg")]
    path = tmp_path / "out.lst"
    lst.write_lst(path, entries)
    assert path.read_text().splitlines()[0] == "0\t1.000000\ta/x.jpg"
    assert lst.read_lst(path, multi_label=False, num_classes=2) == entries


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_class_folders_are_labelled_by_sorted_name_recursively(tmp_path):
    for rel in [
        "dog/b.jpg",
        "dog/a.PNG",
        "cat/sub/z.jpeg",
        "cat/y.jpg",
        "cat/notes.txt",
        "cat/.hidden.jpg",
        ".git/x.jpg",
    ]:
        _touch(tmp_path / rel)
    entries, classes = lst.list_class_folders(tmp_path)
    assert classes == ["cat", "dog"]
    assert [(e.index, e.label, e.relpath) for e in entries] == [
        (0, 0, "cat/y.jpg"),
        (1, 0, "cat/sub/z.jpeg"),
        (2, 1, "dog/a.PNG"),
        (3, 1, "dog/b.jpg"),
    ]


def _entries(counts: dict[int, int]) -> list[Entry]:
    out = []
    for label, n in counts.items():
        out.extend(Entry(len(out), (float(label),), f"c{label}/{i}.jpg") for i in range(n))
    return out


def test_split_is_stratified_and_deterministic():
    entries = _entries({0: 10, 1: 20, 2: 5})
    train, val = lst.split_entries(entries, 0.2, seed=3)
    assert Counter(e.label for e in val) == {0: 2, 1: 4, 2: 1}
    assert len(train) + len(val) == len(entries)
    assert not {e.index for e in train} & {e.index for e in val}
    assert lst.split_entries(entries, 0.2, seed=3) == (train, val)
    assert lst.split_entries(list(reversed(entries)), 0.2, seed=3) == (train, val)
    _, other = lst.split_entries(entries, 0.2, seed=4)
    assert {e.index for e in other} != {e.index for e in val}


def test_split_keeps_one_image_of_each_class_on_each_side():
    entries = _entries({0: 2, 1: 3, 2: 1})
    train, val = lst.split_entries(entries, 0.01, seed=0)
    assert Counter(e.label for e in val) == {0: 1, 1: 1}
    assert Counter(e.label for e in train) == {0: 1, 1: 2, 2: 1}
    _, val = lst.split_entries(entries, 0.99, seed=0)
    assert Counter(e.label for e in val) == {0: 1, 1: 2, 2: 1}


def test_infer_class_names_from_top_level_folders():
    entries = [Entry(0, (0.0,), "cat/a.jpg"), Entry(1, (1.0,), "dog/b.jpg")]
    assert lst.infer_class_names(entries, 2) == ["cat", "dog"]


@pytest.mark.parametrize(
    ("entries", "num_classes"),
    [
        ([Entry(0, (0.0,), "a.jpg"), Entry(1, (1.0,), "b.jpg")], 2),
        ([Entry(0, (0.0,), "x/a.jpg"), Entry(1, (0.0,), "y/b.jpg")], 1),
        ([Entry(0, (0.0,), "x/a.jpg")], 2),
    ],
)
def test_infer_class_names_falls_back_to_indices(entries, num_classes):
    assert lst.infer_class_names(entries, num_classes) == [str(k) for k in range(num_classes)]


def test_byte_order_mark_is_ignored(tmp_path):
    """Excel's "CSV UTF-8" and some editors start the file with a BOM."""
    path = tmp_path / "train.lst"
    path.write_bytes("0\t1\ta.jpg\n1\t0\tb.jpg\n".encode("utf-8-sig"))
    assert [e.index for e in lst.read_lst(path, multi_label=False, num_classes=2)] == [0, 1]
