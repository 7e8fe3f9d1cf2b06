"""Download one weight file from the first source that has it intact.

Sources are tried in the user's order (``IC_WEIGHT_SOURCES``: comma-separated names, each
optionally ``name=base_url`` for a mirror; ``HF_ENDPOINT`` and ``MXNET_GLUON_REPO`` keep their
usual meaning), those whose file has a checksum pinned in the catalog first (:func:`attempts`).
Every download goes to a temporary file in the target folder and is checked against the
published checksum before it is renamed into place, so a failed or tampered download leaves
nothing behind; each failure is logged with its URL and reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from train.weights.catalog import GLUONCV_ZIP, SOURCES, SourceFile, WeightFile

logger = logging.getLogger(__name__)

SOURCES_ENV = "IC_WEIGHT_SOURCES"
DEFAULT_BASES = {
    "huggingface": "https://huggingface.co/",
    "pytorch": "https://download.pytorch.org/models/",
    "gluoncv": "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/",
}
_BASE_ENVS = {"huggingface": "HF_ENDPOINT", "gluoncv": "MXNET_GLUON_REPO"}
_CHUNK = 1 << 20
TIMEOUT_S = 30


@dataclass(frozen=True)
class Failure:
    """One URL that did not give a good file, and why."""

    url: str
    reason: str

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class FetchFailed(Exception):
    """No source gave the file; ``failures`` lists every URL tried and why it failed."""

    def __init__(self, failures: list[Failure]):
        super().__init__("; ".join(map(str, failures)) or "no source configured")
        self.failures = failures


def source_bases(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{source name: base URL}`` in the order to try, from ``IC_WEIGHT_SOURCES``.

    Raises:
        ValueError: for a name that is not a known source.
    """
    env = os.environ if environ is None else environ
    spec = env.get(SOURCES_ENV, "").strip() or ",".join(SOURCES)
    bases: dict[str, str] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, _, base = item.partition("=")
        if name not in SOURCES:
            raise ValueError(
                f"{SOURCES_ENV}={spec!r}: unknown source {name!r}; use a comma-separated list "
                f"of {', '.join(SOURCES)}, each optionally name=https://mirror/"
            )
        base = base or env.get(_BASE_ENVS.get(name, ""), "") or DEFAULT_BASES[name]
        bases[name] = base if base.endswith("/") else base + "/"
    return bases


def _download(url: str, target: Path) -> None:
    """Stream ``url`` into ``target`` (requests honours HTTPS_PROXY and REQUESTS_CA_BUNDLE)."""
    import requests

    with requests.get(url, stream=True, timeout=TIMEOUT_S) as response:
        response.raise_for_status()
        with open(target, "wb") as out:
            for chunk in response.iter_content(_CHUNK):
                out.write(chunk)


def describe(exc: Exception) -> str:
    """A download failure in a few words a user can act on."""
    import requests

    errors = requests.exceptions
    if isinstance(exc, errors.SSLError):
        return "TLS certificate not trusted (behind a TLS-inspecting proxy? trust its CA)"
    if isinstance(exc, errors.Timeout):
        return f"no answer within {TIMEOUT_S} s"
    if isinstance(exc, errors.ConnectionError):
        if any(sign in str(exc) for sign in ("NameResolutionError", "Failed to resolve")):
            return "host name does not resolve (no internet access or no DNS)"
        return "cannot connect (refused or unreachable)"
    if isinstance(exc, errors.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unzip_params(archive: Path, target: Path) -> None:
    """GluonCV's zip holds one ``.params`` file: move its content to ``target``."""
    with zipfile.ZipFile(archive) as zf:
        members = [n for n in zf.namelist() if n.endswith(".params")]
        if len(members) != 1:
            raise ValueError(f"the zip holds {len(members)} .params files, expected 1")
        with zf.open(members[0]) as src, open(target, "wb") as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)


def _verify(source: SourceFile, path: Path, url: str) -> None:
    if source.checksum is None:
        logger.warning(
            "UNVERIFIED DOWNLOAD: no checksum is pinned for %s, so nothing shows it is the "
            "file its publisher released (sha256 %s). It is used only because no source with a "
            "pinned checksum gave these weights; to be sure, check that sha256 against the "
            "publisher and pin it in train/weights/catalog.py, or give your own file in the "
            "'pretrained' channel",
            url,
            file_digest(path, "sha256"),
        )
        return
    actual = file_digest(path, source.checksum.algorithm)
    if not source.checksum.matches(actual):
        raise ValueError(
            f"{source.checksum.algorithm} {actual} does not match the published "
            f"{source.checksum.value}"
        )


def fetch_one(source: SourceFile, base: str, folder: Path) -> Path:
    """Download ``source`` from ``base`` into ``folder`` and verify it; return the file.

    The result is a raw downloaded file (safetensors, .pth, or GluonCV's extracted .params);
    nothing is left in ``folder`` when this raises.
    """
    url = base + source.path
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _download(url, tmp)
        if source.fmt == GLUONCV_ZIP:
            of_member = source.checksum is not None and source.checksum.of_member
            if not of_member:
                _verify(source, tmp, url)
            extracted = tmp.with_suffix(".params")
            try:
                _unzip_params(tmp, extracted)
                if of_member:
                    _verify(source, extracted, url)
            except BaseException:
                extracted.unlink(missing_ok=True)
                raise
            extracted.replace(tmp)
        else:
            _verify(source, tmp, url)
        return tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def attempts(
    candidates: Sequence[WeightFile], bases: Mapping[str, str]
) -> list[tuple[WeightFile, SourceFile, str]]:
    """``(weights, source, base URL)`` in the order to try them: first every source whose file
    has a pinned checksum (candidates in their order, sources in ``bases`` order), then the same
    for the files without one. A file that can be verified wins over a better-ranked one that
    cannot; an unverified file is used only when nothing verifiable can be had."""
    found = [
        (weights, source, base)
        for weights in candidates
        for name, base in bases.items()
        for source in weights.files
        if source.source == name
    ]
    return sorted(found, key=lambda attempt: attempt[1].checksum is None)  # stable


@dataclass(frozen=True)
class Fetched:
    """Where a file came from: the ``source`` entry and ``url``, and the ``failures`` of the
    sources tried before it."""

    source: SourceFile
    url: str
    failures: list[Failure]


def fetch(
    weights: WeightFile,
    folder: Path,
    bases: Mapping[str, str],
    install: Callable[[Path, SourceFile], None],
) -> Fetched:
    """Download ``weights`` from the sources in :func:`attempts` order until one gives a file
    that verifies and that ``install(raw_file, source)`` accepts (it converts or moves the file;
    an exception from it counts as that source's failure). The raw file is always removed.

    Raises:
        FetchFailed: listing every URL tried.
    """
    folder.mkdir(parents=True, exist_ok=True)
    failures: list[Failure] = []
    for _, source, base in attempts([weights], bases):
        url = base + source.path
        logger.info(
            "Downloading %s ResNet-%d from %s (%s)",
            weights.set_name,
            weights.depth,
            url,
            source.verification,
        )
        try:
            raw = fetch_one(source, base, folder)
            try:
                install(raw, source)
            finally:
                raw.unlink(missing_ok=True)
            return Fetched(source, url, failures)
        except Exception as exc:  # noqa: BLE001 - network, HTTP, TLS, checksum: try the next
            reason = describe(exc)
            logger.warning("Could not use %s: %s", url, reason)
            failures.append(Failure(url, reason))
    raise FetchFailed(failures)
