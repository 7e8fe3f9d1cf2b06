"""The built-in-style models' precondition (``tests.builtin_models``): training goes on until
plain MXNet scores :data:`~tests.builtin_models.MIN_ACCURACY`, and says so when it never does.
CPU training differs between machines and loads, so a fixed number of epochs is no guarantee.
Plain MXNet's validation answers are scripted here, round by round."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from tests import builtin_models as bm

TINY = bm.Variant("tiny", 20, 28, epochs=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> bm.Dataset:
    return bm.make_dataset(tmp_path_factory.mktemp("tiny"), train_per_class=4, val_per_class=4)


def script_rounds(monkeypatch, data: bm.Dataset, correct: list[int]) -> None:
    """Plain MXNet's answers on the validation images: right for ``correct[i]`` of them in
    round ``i`` (the last count repeats)."""
    truth = np.array([label for _, label in data.validation])
    rounds = iter(correct)
    last = correct[-1]

    def answers(symbol, args, auxs, batch):
        nonlocal last
        last = next(rounds, last)
        labels = np.where(np.arange(len(truth)) < last, truth, (truth + 1) % data.num_classes)
        return np.eye(data.num_classes, dtype=np.float32)[labels]

    monkeypatch.setattr(bm, "_forward", answers)


def test_a_model_short_of_the_precondition_trains_another_round(monkeypatch, data, tmp_path):
    script_rounds(monkeypatch, data, [6, 12])  # 0.5, then 1.0
    model = bm.train_builtin_model(TINY, data, tmp_path)
    assert (model.epoch, model.accuracy) == (2, 1.0)
    assert sorted(p.name for p in tmp_path.glob("*.params")) == [f"{bm.PREFIX}-0002.params"]
    _, args, _ = mx.model.load_checkpoint(str(tmp_path / bm.PREFIX), 2)
    assert args["conv0_weight"].shape == (16, 3, 3, 3)


def test_a_model_that_never_learns_fails_with_what_it_reached(monkeypatch, data, tmp_path):
    monkeypatch.setattr(bm, "MAX_ROUNDS", 2)
    script_rounds(monkeypatch, data, [6])
    with pytest.raises(RuntimeError, match=r"\[0\.5, 0\.5\] after rounds of 1 epochs, never 0\.9"):
        bm.train_builtin_model(TINY, data, tmp_path / "model")
    assert not (tmp_path / "model").exists()
