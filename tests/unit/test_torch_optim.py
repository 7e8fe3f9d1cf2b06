"""The PyTorch engine's optimizers, losses and loss scaler against MXNet 1.9.1 itself.

MXNet computes every expectation, in this process, through the product's own set-up
(``tests/torch_optim_mxnet.py``); the torch side replays the same inputs in ``.venv-torch``
(``tests/torch_optim_side.py``, one process for the module).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.torch_optim_mxnet import CASES, SHAPES, build, chain_cases
from tests.torch_side import run_module as run_torch_module

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("torch-optim")
    spec, arrays, mxnet_out = build(tmp)
    torch_out = run_torch_module("tests.torch_optim_side", spec, arrays, tmp)
    return {"torch": torch_out, "mxnet": mxnet_out}


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", list(CASES))
def test_optimizer_matches_mxnet_across_an_lr_step(results, name):
    torch_final = [results["torch"][f"{name}/final/w{i}"] for i in range(len(SHAPES))]
    assert _max_diff(torch_final, results["mxnet"][name]) <= TOLERANCE


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_round_trip_at_step_10_continues_identically(results, name):
    final = [results["torch"][f"{name}/final/w{i}"] for i in range(len(SHAPES))]
    resumed = [results["torch"][f"{name}/resumed/w{i}"] for i in range(len(SHAPES))]
    assert _max_diff(resumed, final) == 0.0


@pytest.mark.parametrize("name", ["sgd", "nag", "adam", "rmsprop"])
def test_torch_built_in_optimizer_would_fail_the_same_check(results, name):
    built_in = [results["torch"][f"{name}/built_in/w{i}"] for i in range(len(SHAPES))]
    assert _max_diff(built_in, results["mxnet"][name]) > 1e-3


def test_the_harness_is_fair_where_the_formulas_agree(results):
    """Plain SGD is the same function in both frameworks: torch's own must pass."""
    built_in = [results["torch"][f"sgd_no_momentum/built_in/w{i}"] for i in range(len(SHAPES))]
    assert _max_diff(built_in, results["mxnet"]["sgd_no_momentum"]) <= TOLERANCE


@pytest.mark.parametrize("kind", ["softmax", "bce", "bce_weighted"])
@pytest.mark.parametrize(("dtype", "tolerance"), [("float64", TOLERANCE), ("float32", 1e-5)])
def test_loss_value_and_gradient_match_gluon(results, kind, dtype, tolerance):
    """torch in float32 against MXNet's kernels (float64) and its oneDNN float32 CPU path."""
    for part in ("value", "grad"):
        expected = results["mxnet"][f"loss/{kind}/{part}/{dtype}"]
        assert np.abs(results["torch"][f"loss/{kind}/{part}"] - expected).max() <= tolerance


def test_fused_torch_bce_differs_from_gluon_at_a_zero_logit(results):
    fused = results["torch"]["loss/bce_fused/grad"]
    assert np.abs(fused - results["mxnet"]["loss/bce/grad/float64"]).max() > 0.05


@pytest.mark.parametrize("name", [c["name"] for c in chain_cases()])
def test_update_from_split_batches_matches_mxnet(results, name):
    """Hosts x devices slices, DDP-style averaging and ``rescale_grad`` give MXNet's update."""
    weight, bias = results["mxnet"][name]
    got = [results["torch"][f"{name}/weight"], results["torch"][f"{name}/bias"]]
    assert _max_diff(got, [weight, bias]) <= TOLERANCE


def test_device_slices_follow_split_and_load(results):
    for (b, g), sizes in results["mxnet"]["splits"].items():
        assert list(results["torch"][f"split/{b}/{g}"]) == sizes, (b, g)


def test_loss_scale_follows_mxnet_amp(results):
    expected = results["mxnet"]["scaler/scales"]
    assert expected.max() == 2.0**24 and expected.min() < 2.0**22 and expected[-1] > expected[2010]
    np.testing.assert_array_equal(results["torch"]["scaler/scales"], expected)


def test_overflow_skips_the_step_and_unscaling_is_exact(results):
    torch_out = results["torch"]
    assert list(torch_out["scaler/ran"]) == [True, True, False, True, True, True]
    assert list(torch_out["scaler/t"]) == [5, 5]
    np.testing.assert_array_equal(torch_out["scaler/scaled_w"], torch_out["scaler/plain_w"])


def test_parameter_without_gradient_updates_like_a_fix_gamma_gamma(results):
    torch_out = results["torch"]
    assert np.abs(torch_out["edge/gamma"] - results["mxnet"]["edge/gamma"]).max() <= TOLERANCE
    assert (results["mxnet"]["edge/gamma"] != 1.0).all()  # MXNet did move it
    np.testing.assert_array_equal(torch_out["edge/frozen"], np.ones(3))
    assert int(torch_out["edge/param_count"]) == 1


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("optimizer", "'adagrad' is not one of sgd, nag, adam, rmsprop"),
        ("no_params", "no parameter requires a gradient"),
        ("batch", "must all be at least 1"),
        ("slices", "must both be at least 1"),
        ("dtype", "is not float32, float16 or bfloat16"),
        ("pos_weight", "multi-label loss only"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(results, what, words):
    assert words in str(results["torch"][f"refused/{what}"])
