"""The PyTorch engine's epoch plan and augmentation arithmetic, where they need no torch: these
modules import only numpy and OpenCV, so they run here, in ``.venv``, directly."""

from __future__ import annotations

import numpy as np
import pytest

from train.engines.torch import augment
from train.engines.torch.plan import EpochPlan, part_range
from train.errors import ClientError


@pytest.mark.parametrize("count", [22, 23, 30, 97])
@pytest.mark.parametrize("parts", [2, 3, 4])
def test_every_part_runs_the_same_steps_over_its_own_records(count, parts):
    largest = -(-count // parts)  # dmlc's ceil(N/parts) per part
    steps = -(-largest // 4)
    seen = set()
    for part in range(parts):
        plan = EpochPlan(count, 4, shuffle=True, seed=1, num_parts=parts, part_index=part)
        records = set(part_range(count, parts, part))
        for epoch in range(4):
            batches = list(plan.batches(epoch))
            assert len(batches) == plan.steps(epoch) == steps
            assert all(len(b) == 4 and {s.record for s in b} <= records for b in batches)
        seen |= records
    assert seen == set(range(count))


def test_one_part_borrows_from_the_next_epoch_and_skips_it_later():
    plan = EpochPlan(22, 4, shuffle=True, seed=3)
    epochs = [[s.record for b in plan.batches(e) for s in b] for e in range(4)]
    assert [len(e) for e in epochs] == [24, 20, 24, 20]
    assert sorted(epochs[0][:22]) == sorted(epochs[0][22:] + epochs[1]) == list(range(22))
    assert epochs[0][:22] != epochs[2][:22]  # a new permutation each pass


def test_validation_reads_every_record_once_in_order():
    plan = EpochPlan(10, 4, num_parts=1, round_batch=False)
    assert [[s.record for s in b] for b in plan.batches(0)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_part_left_empty_is_an_error_that_says_how_many_images_are_needed():
    with pytest.raises(ClientError, match="4 images cannot be split between 3 workers"):
        part_range(4, 3, 2)


@pytest.mark.parametrize(
    "height, width, size, expected",
    [(300, 200, 100, (150, 100)), (199, 301, 100, (100, 151)), (37, 37, 36, (36, 36))],
)
def test_the_iterator_resize_divides_as_cpp_does(height, width, size, expected):
    assert augment.resized_shape(height, width, size) == expected


def test_draws_stay_in_mxnets_ranges_and_truncate_toward_zero():
    settings = augment.AugmentSettings.for_training("crop_color_transform", (3, 8, 8), None)
    rng = np.random.default_rng(0)
    draws = [augment.draw(settings, rng) for _ in range(4000)]
    hue = np.array([d.dh for d in draws])
    assert hue.min() == -35 and hue.max() == 35 and np.mean(hue == 0) / np.mean(hue == 1) > 1.6
    assert {d.angle for d in draws} == set(range(-10, 11))
    assert 0.75 <= min(d.ratio for d in draws) < 0.76 and 1.24 < max(d.ratio for d in draws) < 1.25
    assert 0.45 < np.mean([d.mirror for d in draws]) < 0.55


def test_an_image_smaller_than_the_crop_is_a_client_error():
    settings = augment.AugmentSettings.for_evaluation((3, 32, 32), None)
    with pytest.raises(ClientError, match="smaller than image_shape 32x32: set 'resize'"):
        augment.augment(np.zeros((20, 40, 3), np.uint8), settings, augment.Draws())
