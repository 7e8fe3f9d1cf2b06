"""``model.onnx`` and the conversion command, against answers computed without the product.

The built-in-style models come from ``tests.builtin_models`` (``bn_data_gamma`` stored as 0.5,
which MXNet ignores and MXNet 1.9.1's ONNX exporter does not); ONNX Runtime runs the exported
file as any ONNX user would, and the expected answers are plain MXNet's. Models trained by this
product are checked the same way in ``test_train_job.py`` (the jobs that train them anyway).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tarfile

import mxnet as mx
import numpy as np
import onnx
import pytest

from tests import builtin_models as bm
from tests.integration.conftest import REPO
from tests.integration.test_builtin_interop import served
from tests.onnx_checks import TOLERANCE, max_difference
from train.formats import onnx as onnx_format

pytestmark = pytest.mark.integration


def spread(pixels: np.ndarray, count: int = 8) -> np.ndarray:
    """``count`` images spread over the (class-ordered) validation set: every class appears."""
    return pixels[np.linspace(0, len(pixels) - 1, count).astype(int)]


@pytest.mark.parametrize("variant", bm.VARIANTS, ids=[v.name for v in bm.VARIANTS])
def test_builtin_model_exports_with_plain_mxnet_answers(builtin_model, variant, tmp_path):
    model = builtin_model(variant)
    stored = mx.nd.load(str(model.model_dir / f"{bm.PREFIX}-{model.epoch:04d}.params"))
    assert np.all(stored["arg:bn_data_gamma"].asnumpy() == bm.BN_DATA_GAMMA)

    path = onnx_format.write(model.model_dir, tmp_path / "model.onnx")

    pixels = spread(model.validation_pixels())
    diff = max_difference(
        path, model.model_dir / bm.PREFIX, model.epoch, pixels, model.plain_symbol
    )
    print(f"\n{variant.name}: ONNX Runtime vs plain MXNet, max abs diff {diff:.1e}")
    assert diff <= TOLERANCE
    exported = onnx.load(str(path))
    assert [i.name for i in exported.graph.input] == ["data"]  # weights are initializers
    batch_axis = exported.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param and not batch_axis.dim_value  # dynamic
    assert [(o.domain, o.version) for o in exported.opset_import] == [("", onnx_format.OPSET)]


@pytest.mark.parametrize("variant", [bm.SMALL, bm.FLOAT16], ids=["small", "float16"])
def test_conversion_command_on_a_builtin_model_tarball(builtin_model, variant, tmp_path):
    model = builtin_model(variant)
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for path in model.model_dir.iterdir():
            tar.add(path, arcname=path.name)

    result = subprocess.run(
        [sys.executable, "-m", "train.formats.onnx", str(tarball)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    written = tmp_path / "model.onnx"  # beside the tarball by default
    assert f"wrote {written}" in result.stdout
    pixels = spread(model.validation_pixels())
    prefix, symbol = model.model_dir / bm.PREFIX, model.plain_symbol
    assert max_difference(written, prefix, model.epoch, pixels, symbol) <= TOLERANCE


def test_conversion_command_names_what_is_missing(tmp_path, capsys):
    (tmp_path / "model-shapes.json").write_text('[{"name": "data", "shape": [1, 3, 8, 8]}]')
    out = tmp_path / "out.onnx"
    assert onnx_format._main([str(tmp_path), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "missing: image-classification-symbol.json" in error
    assert "Traceback" not in error
    assert not out.exists()


@pytest.mark.parametrize("variant", [bm.SMALL, bm.MULTI_LABEL, bm.FLOAT16], ids=lambda v: v.name)
def test_builtin_model_is_converted_at_load_and_served_by_onnx_runtime(
    builtin_model, variant, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    model = builtin_model(variant)
    files = [path for path, _ in model.data.validation]
    got = served(model.model_dir, tmp_path, files, backend="onnxruntime")
    diff = float(np.abs(got - model.predict(model.validation_pixels())).max())
    print(f"\n{variant.name} served by ONNX Runtime vs plain MXNet: max abs diff {diff:.1e}")
    assert diff <= 1e-3  # the server's JPEG/PNG decoding and resize, as for MXNet
    assert "No model.onnx next to the model: converting it now" in caplog.text
