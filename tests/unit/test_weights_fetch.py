"""Sources are tried in the user's order against real HTTP servers on loopback: an unreachable
one, one serving a file whose checksum is wrong, and a good one."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.ports import free_port
from train import pretrained
from train.errors import ClientError
from train.weights import catalog, fetch, store

REPO = Path(__file__).resolve().parents[2]
GOOD = b"the good weights" * 100


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """``serve(files) -> base URL`` of a loopback HTTP server holding ``{path: bytes}``."""
    servers = []

    def start(files: dict[str, bytes]) -> str:
        root = tmp_path / f"site{len(servers)}"
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        handler = functools.partial(_Quiet, directory=str(root))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"


def _zip(member: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(member, data)
    return buffer.getvalue()


def _weight_file() -> catalog.WeightFile:
    """ResNet-18 published by all three sources; the published digests are GOOD's."""
    sha256 = catalog.Checksum("sha256", hashlib.sha256(GOOD).hexdigest())
    sha1 = catalog.Checksum("sha1", hashlib.sha1(GOOD).hexdigest(), of_member=True)
    return catalog.WeightFile(
        "test_set",
        18,
        "v1",
        70.0,
        (
            catalog.SourceFile("huggingface", "hf/model.safetensors", catalog.SAFETENSORS, sha256),
            catalog.SourceFile("pytorch", "resnet18-abcdef12.pth", catalog.TORCH_PTH, sha256),
            catalog.SourceFile("gluoncv", "gluon/models/r18.zip", catalog.GLUONCV_ZIP, sha1),
        ),
    )


def test_falls_back_past_an_unreachable_and_a_tampered_source(serve, tmp_path, caplog):
    unreachable = _closed_port_url()
    tampered = serve({"resnet18-abcdef12.pth": b"not the weights"})
    good = serve({"gluon/models/r18.zip": _zip("resnet18_v1-12345678.params", GOOD)})
    cache = tmp_path / "cache"
    bases = {"huggingface": unreachable, "pytorch": tampered, "gluoncv": good}
    with caplog.at_level(logging.INFO):
        weights, failures = store.download([_weight_file()], cache, bases)
    assert weights.path.read_bytes() == GOOD
    assert [f.url for f in failures] == [
        unreachable + "hf/model.safetensors",
        tampered + "resnet18-abcdef12.pth",
    ]
    assert failures[0].reason == "cannot connect (refused or unreachable)"
    assert "does not match the published" in failures[1].reason
    assert f"Could not use {unreachable}hf/model.safetensors" in caplog.text
    assert f"Could not use {tampered}resnet18-abcdef12.pth" in caplog.text
    assert sorted(p.name for p in cache.iterdir()) == ["resnet18_v1-test_set.params"]


def test_a_verified_file_that_cannot_be_read_falls_back_to_the_next_source(serve, tmp_path):
    verified_but_not_safetensors = serve({"hf/model.safetensors": GOOD})
    good = serve({"gluon/models/r18.zip": _zip("r18.params", GOOD)})
    bases = {"huggingface": verified_but_not_safetensors, "gluoncv": good}
    weights, failures = store.download([_weight_file()], tmp_path / "cache", bases)
    assert weights.path.read_bytes() == GOOD and weights.origin.endswith("r18.zip")
    assert failures[0].url.endswith("hf/model.safetensors")
    assert "not a readable safetensors file" in failures[0].reason


def test_the_users_order_wins(serve, tmp_path):
    good_zip = serve({"gluon/models/r18.zip": _zip("r18.params", GOOD)})
    tampered = serve({"hf/model.safetensors": b"tampered"})
    bases = fetch.source_bases(
        {
            fetch.SOURCES_ENV: "gluoncv,huggingface",
            "MXNET_GLUON_REPO": good_zip.rstrip("/"),
            "HF_ENDPOINT": tampered,
        }
    )
    assert bases == {"gluoncv": good_zip, "huggingface": tampered}
    kept = tmp_path / "kept"
    got = fetch.fetch(_weight_file(), tmp_path / "dl", bases, lambda raw, _: raw.rename(kept))
    assert (got.source.source, got.url) == ("gluoncv", good_zip + "gluon/models/r18.zip")
    assert kept.read_bytes() == GOOD
    assert list((tmp_path / "dl").iterdir()) == []


def test_a_missing_or_wrong_file_everywhere_fails_and_leaves_nothing(serve, tmp_path):
    bad = serve({"resnet18-abcdef12.pth": b"y", "gluon/models/r18.zip": _zip("r18.params", b"z")})
    with pytest.raises(fetch.FetchFailed) as failed:
        fetch.fetch(_weight_file(), tmp_path / "dl", dict.fromkeys(catalog.SOURCES, bad), print)
    reasons = [f.reason for f in failed.value.failures]
    assert reasons[0] == "HTTP 404"
    assert all("does not match the published" in r for r in reasons[1:]) and len(reasons) == 3
    assert list((tmp_path / "dl").iterdir()) == []


def test_an_unknown_source_name_is_refused():
    with pytest.raises(ValueError, match="unknown source 'github'"):
        fetch.source_bases({fetch.SOURCES_ENV: "huggingface,github"})


def test_a_job_that_cannot_download_says_what_to_do(tmp_path, monkeypatch):
    unreachable = _closed_port_url()
    monkeypatch.setenv(fetch.SOURCES_ENV, f"pytorch={unreachable},huggingface={unreachable}")
    with pytest.raises(ClientError) as error:
        pretrained.locate_weights(50, tmp_path / "none", tmp_path / "cache", "torchvision_v1")
    message = str(error.value)
    assert f"{unreachable}resnet50-0676ba61.pth: cannot connect" in message
    assert "'pretrained' channel" in message and "use_pretrained_model=0" in message
    assert "REQUESTS_CA_BUNDLE" in message and "reported unreachable since 2024" in message


def test_the_bake_without_network_prints_a_message_not_a_traceback(tmp_path):
    nowhere = "http://weights.invalid/"
    env = {
        "PATH": "/usr/bin:/bin",
        fetch.SOURCES_ENV: ",".join(f"{name}={nowhere}" for name in catalog.SOURCES),
    }
    result = subprocess.run(
        [sys.executable, "-m", "train.pretrained", "--bake", str(tmp_path), "--layers", "18"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr[result.stderr.index("error: ") :]
    assert error.startswith("error: Could not download ImageNet weights for ResNet-18. Tried:")
    assert f"{nowhere}timm/resnet18.gluon_in1k/resolve/main/model.safetensors" in result.stderr
    assert f"{nowhere}resnet18-f37072fd.pth" in result.stderr
    for way_out in ("OIC_BAKE_WEIGHTS=0", "--build-arg BAKE_WEIGHTS=0", "use_pretrained_model=0"):
        assert way_out in result.stderr
    assert "OIC_CA_BUNDLE" in result.stderr and "'pretrained' channel" in result.stderr
    assert "host name does not resolve" in error
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".download-")]


def test_the_host_check_reports_every_file_of_every_source(tmp_path, monkeypatch, capsys):
    closed = _closed_port_url()
    monkeypatch.setenv(fetch.SOURCES_ENV, ",".join(f"{s}={closed}" for s in catalog.SOURCES))
    failed = store.check_sources(tmp_path)
    lines = capsys.readouterr().out.splitlines()
    expected = [f.path for w in catalog.WEIGHT_FILES for f in w.files]
    assert failed == len(lines) == len(expected)
    for line, path in zip(lines, expected, strict=True):
        assert line.startswith("FAIL") and f"{closed}{path}: cannot connect" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("depth", [200, 20, 110])
def test_depths_without_public_weights_say_so(tmp_path, depth):
    with pytest.raises(ClientError, match=f"no public ImageNet weights for ResNet-{depth}"):
        pretrained.locate_weights(depth, tmp_path / "none", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_the_baked_cache_serves_the_best_set_it_holds_or_the_pinned_one(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.SOURCES_ENV, f"pytorch={_closed_port_url()}")  # no download
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("resnet50_v1b-torchvision_v1.params", "resnet50_v1b-gluoncv_v1b.params"):
        (cache / name).write_bytes(b"baked")
    best = pretrained.locate_weights(50, tmp_path / "none", cache)
    assert (best.path.name, best.variant) == ("resnet50_v1b-gluoncv_v1b.params", "v1b")
    pinned = pretrained.locate_weights(50, tmp_path / "none", cache, "torchvision_v1")
    assert pinned.path.name == "resnet50_v1b-torchvision_v1.params"
    assert "torchvision_v1" in pinned.origin and "76.13 top-1" in pinned.origin
