"""What ``inputdataconfig.json`` says about each channel.

SageMaker writes one entry per channel with ``ContentType``, ``TrainingInputMode`` (``File``,
``Pipe`` or ``FastFile``), ``S3DistributionType`` and ``RecordWrapperType``. Only those facts are
read here; a missing file or key means File mode, as in local runs that predate Pipe mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from train import json_input
from train.errors import ClientError

FULLY_REPLICATED = "FullyReplicated"
SHARDED_BY_S3_KEY = "ShardedByS3Key"


@dataclass(frozen=True)
class Channel:
    """One channel's input settings."""

    name: str
    content_type: str = ""
    input_mode: str = "File"
    distribution: str = FULLY_REPLICATED
    record_wrapper: str = "None"

    @property
    def pipe(self) -> bool:
        """Pipe mode: the channel arrives as ``<name>_<n>`` FIFOs, one per pass."""
        return self.input_mode.lower() == "pipe"

    @property
    def class_id_labels(self) -> bool:
        """Multi-label lists hold class ids (``[0, 2]``) instead of a multi-hot vector: the
        built-in's ``label-format=class-id`` content-type parameter."""
        params = [p.strip().lower().replace(" ", "") for p in self.content_type.split(";")[1:]]
        return "label-format=class-id" in params


def read_channels(path: Path) -> dict[str, Channel]:
    """Every channel of ``inputdataconfig.json`` (an empty map when the file is absent)."""
    if not path.is_file():
        return {}
    try:
        doc = json_input.loads(path.read_text() or "{}")
    except json.JSONDecodeError as exc:
        raise ClientError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ClientError(f"{path} must hold a JSON object of channel name: settings")
    channels = {}
    for name, entry in doc.items():
        entry = entry if isinstance(entry, dict) else {}
        channels[name] = Channel(
            name,
            content_type=str(entry.get("ContentType") or ""),
            input_mode=str(entry.get("TrainingInputMode") or "File"),
            distribution=str(entry.get("S3DistributionType") or FULLY_REPLICATED),
            record_wrapper=str(entry.get("RecordWrapperType") or "None"),
        )
    return channels
