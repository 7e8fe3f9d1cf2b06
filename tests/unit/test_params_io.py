"""The numpy ``.params`` reader and writer against MXNet's own ``mx.nd.save`` / ``mx.nd.load``."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from train.formats import params_io


def _dicts() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    return {
        "float32": {
            "arg:conv0_weight": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
            "arg:fc1_bias": rng.normal(size=5).astype(np.float32),
            "aux:bn_moving_var": rng.random(8).astype(np.float32),
            "arg:scale": np.array([2.5], np.float32),
        },
        "float16": {
            "arg:w": rng.normal(size=(4, 6)).astype(np.float16),
            "aux:m": rng.normal(size=(4,)).astype(np.float32),
        },
        "gluoncv-names": {
            "features.0.weight": rng.normal(size=(2, 1, 1, 1)).astype(np.float32),
            "head.bias": np.zeros(3, np.float32),
        },
        "other-dtypes": {
            "f64": rng.normal(size=(2, 3)).astype(np.float64),
            "u8": np.arange(7, dtype=np.uint8),
            "i32": np.arange(-3, 3, dtype=np.int32).reshape(2, 3),
            "i8": np.arange(-4, 4, dtype=np.int8),
            "i64": np.arange(5, dtype=np.int64),
            "empty": np.zeros((0,), np.float32),
            "": np.ones((1, 1, 1, 1, 2), np.float32),  # an empty name, 5-d
        },
        "none": {},
    }


@pytest.mark.parametrize("case", list(_dicts()))
def test_save_writes_the_bytes_mxnet_writes(tmp_path, case):
    params = _dicts()[case]
    params_io.save(tmp_path / "ours.params", params)
    mx.nd.save(
        str(tmp_path / "mxnet.params"),
        {k: mx.nd.array(v, dtype=v.dtype) for k, v in params.items()},
    )
    assert (tmp_path / "ours.params").read_bytes() == (tmp_path / "mxnet.params").read_bytes()


@pytest.mark.parametrize("case", list(_dicts()))
def test_load_reads_what_mxnet_saved(tmp_path, case):
    params = _dicts()[case]
    mx.nd.save(
        str(tmp_path / "m.params"), {k: mx.nd.array(v, dtype=v.dtype) for k, v in params.items()}
    )
    loaded = params_io.load(tmp_path / "m.params")
    assert list(loaded) == list(params)
    for name, value in params.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)
        assert loaded[name].flags.writeable


def test_mxnet_loads_what_save_wrote(tmp_path):
    params = _dicts()["float16"]
    params_io.save(tmp_path / "p.params", params)
    loaded = mx.nd.load(str(tmp_path / "p.params"))
    for name, value in params.items():
        assert loaded[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded[name].asnumpy(), value)


def test_arrays_saved_from_another_device_load(tmp_path):
    """The device is recorded per array; the reader ignores it (a GPU job's export)."""
    mx.nd.save(str(tmp_path / "p.params"), {"arg:x": mx.nd.array([1, 2], ctx=mx.cpu(3))})
    np.testing.assert_array_equal(params_io.load(tmp_path / "p.params")["arg:x"], [1, 2])


def test_unsaveable_arrays_are_refused_with_their_name(tmp_path):
    with pytest.raises(ValueError, match="arg:s: a 0-d array"):
        params_io.save(tmp_path / "p.params", {"arg:s": np.float32(1.0)})
    with pytest.raises(ValueError, match="arg:c: MXNet cannot save dtype complex64"):
        params_io.save(tmp_path / "p.params", {"arg:c": np.ones(2, np.complex64)})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-3], "truncated or corrupt"),
        (lambda b: b[: len(b) // 2], "truncated or corrupt"),
        (lambda b: b + b"x", "unexpected bytes"),
        (lambda b: b"\x13" + b[1:], "list magic"),
        (lambda b: b"", "truncated or corrupt"),
        (lambda b: b[:16] + b"\xff" * 8 + b[24:], "corrupt: "),
    ],
    ids=["tail", "half", "extra", "magic", "empty", "count"],
)
def test_a_damaged_file_is_named_in_a_clear_error(tmp_path, damage, message):
    mx.nd.save(str(tmp_path / "good.params"), {"arg:w": mx.nd.ones((2, 3))})
    bad = tmp_path / "bad.params"
    bad.write_bytes(damage((tmp_path / "good.params").read_bytes()))
    with pytest.raises(params_io.BadParamsFile, match=message) as caught:
        params_io.load(bad)
    assert str(bad) in str(caught.value)


def test_an_unnamed_list_is_not_parameters(tmp_path):
    mx.nd.save(str(tmp_path / "list.params"), [mx.nd.ones(2)])
    with pytest.raises(params_io.BadParamsFile, match="1 arrays but 0 names"):
        params_io.load(tmp_path / "list.params")
