"""Pipe mode in the image: FIFOs created per pass on the host, as SageMaker's agent creates them
in the training container, read by ``docker run IMAGE train`` through the /opt/ml mount."""

from __future__ import annotations

from tests.container.conftest import TIMINGS, train_in_container
from tests.container.test_train import assert_metric_lines, assert_model_dir
from tests.integration.test_pipe_mode import (  # noqa: F401 - images is a fixture
    MANIFEST_CHANNEL,
    REC_CHANNEL,
    _feed,
    _tree,
    images,
)


def test_a_pipe_mode_job_trains_in_the_image(cpu_image, images, tmp_path):  # noqa: F811
    base = _tree(
        tmp_path / "opt_ml", {"train": MANIFEST_CHANNEL, "validation": REC_CHANNEL}, epochs="2"
    )
    train, validation = _feed(base, images, train_passes=2)
    result = train_in_container(cpu_image, base, timeout=600)
    TIMINGS["train in Pipe mode (cpu image)"] = f"{result.seconds:.0f} s"
    assert result.code == 0, result.log[-6000:]
    assert train.opened == [0, 1] and validation.opened == [0]
    assert_metric_lines(result.log)
    assert_model_dir(base / "model")
