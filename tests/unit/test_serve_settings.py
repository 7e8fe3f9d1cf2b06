"""The environment-variable table: defaults, precedence, validation, documentation."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.settings import ENV_TABLE, Settings, SettingsError, env_table_markdown


def test_defaults_match_sagemaker_hosting() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8080
    assert settings.timeout == 60
    assert settings.max_body_bytes == 6 * 1024 * 1024
    assert settings.model_dir == Path("/opt/ml/model")


def test_model_dir_follows_sagemaker_base_dir(tmp_path) -> None:
    assert Settings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}).model_dir == tmp_path / "model"


def test_bind_to_port_is_honoured() -> None:
    assert Settings.from_env({"SAGEMAKER_BIND_TO_PORT": "9090"}).port == 9090


def test_sagemaker_prefixed_names_win_over_unprefixed() -> None:
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "3", "MODEL_SERVER_WORKERS": "5"}
    assert Settings.from_env(env).workers == 3
    assert Settings.from_env({"MODEL_SERVER_TIMEOUT": "30"}).timeout == 30


def test_blank_values_mean_default() -> None:
    assert Settings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": " "}).workers == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "two"),
        ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "0"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "-6"),
        ("SAGEMAKER_BATCH_STRATEGY", "ALL_AT_ONCE"),
        ("SERVE_PROXY", "apache"),
    ],
)
def test_invalid_values_name_the_variable(name, value) -> None:
    with pytest.raises(SettingsError, match=f"{name}='{value}'"):
        Settings.from_env({name: value})


def test_batch_strategy_accepts_the_api_spelling() -> None:
    assert Settings.from_env({"SAGEMAKER_BATCH_STRATEGY": "SingleRecord"}).batch_strategy == (
        "SINGLE_RECORD"
    )


def test_every_variable_is_in_the_documented_table() -> None:
    table = env_table_markdown()
    assert all(name in table for row in ENV_TABLE for name in row.names)
    assert "SAGEMAKER_BASE_DIR" in table


def test_docs_carry_the_current_table() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
    assert env_table_markdown() in docs.read_text()
