"""The SageMaker ``/opt/ml`` directory contract, in one place and free of side effects.

The base directory comes from ``SAGEMAKER_BASE_DIR`` (default ``/opt/ml``), the same variable
the sagemaker-training toolkit reads, so tests and local runs can point it at any folder.
Nothing here creates a directory: only entry points do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"
SCRATCH_DIR_ENV = "IC_SCRATCH_DIR"


@dataclass(frozen=True)
class Paths:
    """Every file and folder of the training and serving contract, derived from one base dir."""

    base: Path

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Paths:
        """Build from ``SAGEMAKER_BASE_DIR`` (default ``/opt/ml``)."""
        env = os.environ if environ is None else environ
        return cls(Path(env.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR))

    @property
    def config_dir(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def input_data_config(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resource_config(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def data_dir(self) -> Path:
        return self.base / "input" / "data"

    def channel(self, name: str) -> Path:
        """The folder SageMaker copies channel ``name`` into."""
        return self.data_dir / name

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def success_file(self) -> Path:
        return self.output_dir / "success"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base / "checkpoints"

    def scratch_dir(self, environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
        """Local scratch space for the packed RecordIO cache.

        Deliberately outside ``checkpoints/`` (which SageMaker syncs to S3) and ``model/``
        (which becomes model.tar.gz). ``IC_SCRATCH_DIR`` overrides it.
        """
        env = os.environ if environ is None else environ
        override = env.get(SCRATCH_DIR_ENV)
        return Path(override) if override else self.base / "scratch"
