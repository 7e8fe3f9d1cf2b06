"""Hyperparameter parsing and validation: the built-in's names, string encodings and ranges."""

from __future__ import annotations

import dataclasses
import json

import pytest

from train.config import (
    SPECS,
    TrainConfig,
    load_hyperparameters,
    parse_bool,
    parse_hyperparameters,
    parse_image_shape,
    parse_int,
)
from train.errors import ClientError


def _field(key: str) -> str:
    return "ps_port" if key == "_ps_port" else key


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("True", True),
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("1.0", True),
        ('"true"', True),
        (True, True),
        (1, True),
        ("False", False),
        ("false", False),
        ("0", False),
        ('"0"', False),
        (False, False),
    ],
)
def test_parse_bool_accepts_both_sdk_spellings(raw, expected):
    assert parse_bool(raw) is expected


@pytest.mark.parametrize("raw", ["2", "maybe", "", "tru"])
def test_parse_bool_rejects_non_booleans(raw):
    with pytest.raises(ValueError):
        parse_bool(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [("10", 10), ("10.0", 10), ('"10"', 10), (" 7 ", 7), (3, 3)]
)
def test_parse_int_accepts_float_spelled_whole_numbers(raw, expected):
    assert parse_int(raw) == expected


@pytest.mark.parametrize("raw", ["10.5", "ten", ""])
def test_parse_int_rejects_fractions_and_words(raw):
    with pytest.raises(ValueError):
        parse_int(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3,224,224", (3, 224, 224)),
        ("3, 32, 48", (3, 32, 48)),
        ('"3,224,224"', (3, 224, 224)),
        ("(3,224,224)", (3, 224, 224)),
        ("224", (3, 224, 224)),
        ("1,28,28", (1, 28, 28)),
    ],
)
def test_parse_image_shape(raw, expected):
    assert parse_image_shape(raw) == expected


# One valid and one invalid string value per hyperparameter: (key, good, parsed, bad).
TABLE = [
    ("num_classes", "10", 10, "0"),
    ("num_training_samples", "1000", 1000, "-5"),
    ("augmentation_type", "crop_color", "crop_color", "rotate"),
    ("beta_1", "0.8", 0.8, "1.5"),
    ("beta_2", "0.99", 0.99, "-0.1"),
    ("checkpoint_frequency", "5", 5, "0"),
    ("early_stopping", "True", True, "perhaps"),
    ("early_stopping_min_epochs", "3", 3, "0"),
    ("early_stopping_patience", "2", 2, "-1"),
    ("early_stopping_tolerance", "0.05", 0.05, "2"),
    ("epochs", "10.0", 10, "0"),
    ("eps", "1e-6", 1e-6, "3"),
    ("gamma", "0.5", 0.5, "1.1"),
    ("image_shape", "3,32,48", (3, 32, 48), "2,224,224"),
    ("kv_store", "dist_sync", "dist_sync", "local"),
    ("learning_rate", "0.01", 0.01, "1.5"),
    ("lr_scheduler_factor", "0.5", 0.5, "5"),
    ("lr_scheduler_step", "10,20", (10, 20), "10,-2"),
    ("mini_batch_size", "64", 64, "0"),
    ("momentum", "0", 0.0, "1.01"),
    ("multi_label", "1", True, "2"),
    ("num_layers", "50", 50, "42"),
    ("optimizer", "adam", "adam", "adagrad"),
    ("precision_dtype", "float16", "float16", "float64"),
    ("training_engine", "pytorch", "pytorch", "tensorflow"),
    ("resize", "300", 300, "0"),
    ("top_k", "5", 5, "1"),
    ("use_pretrained_model", "true", True, "yesno"),
    ("use_weighted_loss", "0", False, "x"),
    ("weight_decay", "0.0005", 0.0005, "-0.1"),
    ("validation_fraction", "0.25", 0.25, "1"),
    ("seed", "42", 42, "-1"),
    ("max_bad_image_fraction", "0.1", 0.1, "1.5"),
    ("max_image_pixels", "1000000", 1_000_000, "0"),
    ("preprocess_threads", "4", 4, "-2"),
    ("pretrained_weights", "gluoncv_v1", "gluoncv_v1", "imagenet"),
    ("pipe_shuffle_buffer", "256", 256, "0"),
    ("pipe_wait_timeout", "2.5", 2.5, "-1"),
    ("_ps_port", "9000", 9000, "70000"),
]


def test_table_covers_every_hyperparameter():
    assert {row[0] for row in TABLE} == set(SPECS)


@pytest.mark.parametrize(("key", "good", "parsed", "bad"), TABLE, ids=[r[0] for r in TABLE])
def test_every_hyperparameter_parses_its_string_encoding(key, good, parsed, bad):
    cfg = parse_hyperparameters({key: good})
    value = getattr(cfg, _field(key))
    assert value == (pytest.approx(parsed) if isinstance(parsed, float) else parsed)


@pytest.mark.parametrize(("key", "good", "parsed", "bad"), TABLE, ids=[r[0] for r in TABLE])
def test_every_hyperparameter_refuses_out_of_range_values_naming_key_value_and_range(
    key, good, parsed, bad
):
    with pytest.raises(ClientError) as info:
        parse_hyperparameters({key: bad})
    message = str(info.value)
    assert f"{key}=" in message
    assert repr(bad) in message
    assert SPECS[key].allowed in message


@pytest.mark.parametrize(
    ("key", "raw"),
    [("epochs", "ten"), ("learning_rate", "fast"), ("image_shape", "3xx224"), ("top_k", "2.5")],
)
def test_wrong_type_is_refused(key, raw):
    with pytest.raises(ClientError, match=key):
        parse_hyperparameters({key: raw})


def test_json_quoted_strings_are_unquoted():
    cfg = parse_hyperparameters(
        {"optimizer": '"adam"', "epochs": '"4"', "learning_rate": '"0.01"', "multi_label": '"1"'}
    )
    assert (cfg.optimizer, cfg.epochs, cfg.learning_rate, cfg.multi_label) == ("adam", 4, 0.01, 1)


def test_defaults_are_the_builtin_algorithms():
    cfg = parse_hyperparameters({})
    assert cfg == TrainConfig()
    assert (cfg.epochs, cfg.mini_batch_size, cfg.learning_rate) == (30, 32, 0.1)
    assert (cfg.num_layers, cfg.image_shape, cfg.optimizer) == (152, (3, 224, 224), "sgd")


def test_unknown_key_is_refused_by_name():
    with pytest.raises(ClientError, match=r"unknown hyperparameter 'epoch'"):
        parse_hyperparameters({"epoch": "3"})


def test_several_problems_are_reported_at_once():
    with pytest.raises(ClientError) as info:
        parse_hyperparameters({"epochs": "0", "optimizer": "adagrad", "colour": "blue"})
    message = str(info.value)
    for part in ("epochs='0'", "optimizer='adagrad'", "'colour'"):
        assert part in message


def test_every_problem_fits_in_sagemakers_1024_character_failure_reason():
    raw = {"num_epochs": "3", "batch_size": "8", "lr": "0.1", "learning_rate": "5", "top_k": "1"}
    with pytest.raises(ClientError) as info:
        parse_hyperparameters(raw)
    shown = ("Customer Error: " + str(info.value))[:1024]
    for part in ("'num_epochs'", "'batch_size'", "'lr'", "learning_rate='5'", "top_k='1'"):
        assert part in shown
    assert shown.count("valid names: ") == 1
    assert "epochs, eps, gamma" in shown  # the names to choose from, listed once


@pytest.mark.parametrize(
    "key", ["sagemaker_program", "sagemaker_region", "_tuning_objective_metric"]
)
def test_sagemaker_internal_keys_are_ignored_and_remembered(key):
    cfg = parse_hyperparameters({key: "whatever", "epochs": "2"})
    assert cfg.epochs == 2
    assert cfg.ignored == (key,)


@pytest.mark.parametrize("empty", ["", "None", "null", None])
def test_empty_values_keep_the_default(empty):
    assert parse_hyperparameters({"epochs": empty}).epochs == TrainConfig().epochs


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"checkpoint_frequency": "5", "epochs": "3"}, "checkpoint_frequency=5 is larger"),
        ({"resize": "100", "image_shape": "3,224,224"}, "resize=100 is smaller"),
        ({"resize": "40", "image_shape": "3,32,48"}, "resize=40 is smaller"),
        ({"use_weighted_loss": "1"}, "use_weighted_loss=1 requires multi_label=1"),
    ],
)
def test_cross_field_checks(values, fragment):
    with pytest.raises(ClientError, match=fragment):
        parse_hyperparameters(values)


@pytest.mark.parametrize(
    "values",
    [
        {"checkpoint_frequency": "3", "epochs": "3"},
        {"resize": "224", "image_shape": "3,224,224"},
        {"use_weighted_loss": "1", "multi_label": "1"},
    ],
)
def test_cross_field_checks_accept_boundaries(values):
    cfg = parse_hyperparameters(values)
    for key, raw in values.items():
        assert cfg.to_hyperparameters()[key] == raw


def test_config_is_frozen():
    cfg = parse_hyperparameters({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]


def test_to_hyperparameters_round_trips():
    raw = {
        "epochs": "3",
        "image_shape": "3,32,32",
        "resize": "36",
        "lr_scheduler_step": "2,4",
        "multi_label": "true",
        "_ps_port": "9001",
        "sagemaker_program": "x",
    }
    cfg = parse_hyperparameters(raw)
    out = cfg.to_hyperparameters()
    assert all(isinstance(v, str) for v in out.values())
    assert out["image_shape"] == "3,32,32"
    assert out["lr_scheduler_step"] == "2,4"
    assert out["multi_label"] == "1"
    assert out["_ps_port"] == "9001"
    assert "sagemaker_program" not in out
    assert parse_hyperparameters(out) == cfg


def test_load_hyperparameters_reads_json_text():
    cfg = load_hyperparameters(json.dumps({"epochs": "2"}), "hp.json")
    assert cfg.epochs == 2
    assert load_hyperparameters("  ", "hp.json") == TrainConfig()


@pytest.mark.parametrize(("text", "fragment"), [("{not json", "not valid JSON"), ("[1]", "object")])
def test_load_hyperparameters_refuses_bad_documents(text, fragment):
    with pytest.raises(ClientError, match=fragment) as info:
        load_hyperparameters(text, "/opt/ml/input/config/hyperparameters.json")
    assert "hyperparameters.json" in str(info.value)


def test_a_weight_set_without_the_depth_is_refused_up_front():
    with pytest.raises(ClientError, match="torchvision_v2 has no ResNet-18.*gluoncv_v1b"):
        parse_hyperparameters({"num_layers": "18", "pretrained_weights": "torchvision_v2"})
    with pytest.raises(ClientError, match="no public ImageNet weights for ResNet-200"):
        parse_hyperparameters({"num_layers": "200", "pretrained_weights": "torchvision_v1"})
