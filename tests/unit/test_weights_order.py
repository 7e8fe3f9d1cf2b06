"""Downloads are verified first: every source with a pinned checksum is tried before any without
one, across the weight sets of a depth, and an unverified download says so in the log."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from tests.unit.test_weights_fetch import GOOD, serve  # noqa: F401 - the fixture
from train.weights import catalog, fetch, store

WEIGHTS_DOC = (Path(__file__).resolve().parents[2] / "docs" / "weights.md").read_text()


@pytest.fixture
def every_host_answers(monkeypatch) -> list[tuple[catalog.WeightFile, catalog.SourceFile]]:
    """Every download succeeds at once; returns the (weights, source) pairs tried, in order."""
    tried: list[catalog.SourceFile] = []

    def fetch_one(source: catalog.SourceFile, base: str, folder: Path) -> Path:
        tried.append(source)
        raw = folder / ".download-test"
        raw.write_bytes(GOOD)
        return raw

    monkeypatch.setattr(fetch, "fetch_one", fetch_one)
    monkeypatch.setattr(store, "materialise", lambda weights, raw, fmt, target: None)
    return tried


@pytest.mark.parametrize("depth", catalog.IMAGENET_DEPTHS)
def test_the_default_download_of_every_depth_is_verified(every_host_answers, tmp_path, depth):
    bases = fetch.source_bases({})  # the default sources, in their default order
    weights, _ = store.download(catalog.choices(depth), tmp_path, bases)
    (first,) = every_host_answers
    assert first.checksum is not None, f"ResNet-{depth}: {first.path} is not verified"
    assert "UNVERIFIED" not in weights.origin and "verified: " in weights.origin
    set_name = weights.path.name.split("-")[1].removesuffix(".params")
    row = next(
        line
        for line in WEIGHTS_DOC.splitlines()
        if line.startswith("| ResNet-") and (f"{depth}," in line or f"{depth} |" in line)
    )
    assert row.split(" | ")[1:3] == [f"`{set_name}`", first.source], row


def test_a_verifiable_file_wins_over_a_better_ranked_unverifiable_one(serve, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(
        store, "materialise", lambda weights, raw, fmt, target: os.replace(raw, target)
    )
    sha256 = catalog.Checksum("sha256", hashlib.sha256(GOOD).hexdigest())
    host = serve(
        {"best.safetensors": GOOD, "resnet18-abcdef12.pth": GOOD, "next.safetensors": GOOD}
    )
    unpinned = catalog.SourceFile("huggingface", "best.safetensors", catalog.SAFETENSORS, None)
    best = catalog.WeightFile("best_set", 18, "v1", 75.0, (unpinned,))
    pinned = catalog.SourceFile("pytorch", "resnet18-abcdef12.pth", catalog.TORCH_PTH, sha256)
    also = catalog.SourceFile("huggingface", "next.safetensors", catalog.SAFETENSORS, None)
    second = catalog.WeightFile("second_set", 18, "v1", 70.0, (also, pinned))
    bases = {"huggingface": host, "pytorch": host}  # the Hub first, as by default
    weights, failures = store.download([best, second], tmp_path, bases)
    assert weights.path.name == "resnet18_v1-second_set.params" and failures == []
    assert weights.origin == (
        f"second_set (70.0 ImageNet top-1) from pytorch, sha256 verified: "
        f"{host}resnet18-abcdef12.pth"
    )


def test_an_unverified_download_says_so_where_a_user_looks(serve, tmp_path, monkeypatch, caplog):  # noqa: F811
    monkeypatch.setattr(
        store, "materialise", lambda weights, raw, fmt, target: os.replace(raw, target)
    )
    host = serve({"only.safetensors": GOOD})
    unpinned = catalog.SourceFile("huggingface", "only.safetensors", catalog.SAFETENSORS, None)
    only = catalog.WeightFile("only_set", 34, "v1", 74.0, (unpinned,))
    with caplog.at_level(logging.INFO):
        weights, _ = store.download([only], tmp_path, {"huggingface": host})
    assert weights.origin.startswith("only_set (74.0 ImageNet top-1) from huggingface, UNVERIFIED")
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = warning.getMessage()
    assert text.startswith(f"UNVERIFIED DOWNLOAD: no checksum is pinned for {host}only.safetensors")
    assert hashlib.sha256(GOOD).hexdigest() in text and "train/weights/catalog.py" in text


def test_a_checksum_says_how_much_it_checks():
    assert catalog.Checksum("sha256", "ab" * 32).describe() == "sha256 verified"
    assert catalog.Checksum("sha256", "11ad3fa6").describe() == (
        "sha256 prefix (8 hex digits) verified"
    )
    assert catalog.Checksum("sha1", "ab" * 20, of_member=True).describe() == (
        "sha1 of the .params in the zip verified"
    )
