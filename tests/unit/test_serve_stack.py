"""Pieces of the production stack that need no process: nginx config, child environment."""

from __future__ import annotations

import re

import pytest

from serve import proxy, supervisor
from serve.settings import Settings


def settings(**env: str) -> Settings:
    return Settings.from_env({"SAGEMAKER_BASE_DIR": "/tmp/x", **env})


def test_nginx_conf_carries_port_limit_and_timeout(tmp_path) -> None:
    conf = proxy.nginx_conf(
        settings(
            SAGEMAKER_BIND_TO_PORT="9000",
            SAGEMAKER_MAX_PAYLOAD_IN_MB="20",
            SAGEMAKER_MODEL_SERVER_TIMEOUT="30",
        ),
        socket=tmp_path / "g.sock",
        state_dir=tmp_path,
    )
    assert "listen 0.0.0.0:9000" in conf
    assert "client_max_body_size 20m;" in conf
    assert "proxy_read_timeout 35s;" in conf
    assert f"server unix:{tmp_path}/g.sock" in conf
    assert not re.search(r"\$\{[A-Z_]+\}", conf)


def test_render_refuses_an_unknown_placeholder() -> None:
    with pytest.raises(KeyError, match="NOPE"):
        proxy.render("listen ${NOPE};", {})


def test_render_leaves_nginx_variables_alone() -> None:
    assert proxy.render("$http_host ${PORT}", {"PORT": "1"}) == "$http_host 1"


def test_omp_threads_are_shared_between_workers(monkeypatch) -> None:
    monkeypatch.setattr(supervisor.os, "cpu_count", lambda: 8)
    env = supervisor.child_environment(settings(SAGEMAKER_MODEL_SERVER_WORKERS="2"), {})
    assert env["OMP_NUM_THREADS"] == "4"


def test_a_user_omp_setting_is_kept() -> None:
    env = supervisor.child_environment(settings(), {"OMP_NUM_THREADS": "3"})
    assert env["OMP_NUM_THREADS"] == "3"


def test_proxy_none_means_no_nginx() -> None:
    assert supervisor.use_nginx(settings(SERVE_PROXY="none")) is False


def test_required_nginx_that_is_missing_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(proxy, "nginx_binary", lambda: None)
    with pytest.raises(supervisor.ProxyUnavailable):
        supervisor.use_nginx(settings(SERVE_PROXY="nginx"))


def test_workers_let_serve_max_image_pixels_alone_limit_image_sizes(monkeypatch) -> None:
    from types import SimpleNamespace

    from PIL import Image

    from serve import gunicorn_conf, predictor

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 178956970)
    monkeypatch.delenv(predictor.WORKER_INDEX_ENV, raising=False)
    gunicorn_conf.post_fork(SimpleNamespace(num_workers=2), SimpleNamespace(age=3))
    monkeypatch.delenv(predictor.WORKER_INDEX_ENV)
    assert Image.MAX_IMAGE_PIXELS is None
    env = supervisor.child_environment(settings(SERVE_MAX_IMAGE_PIXELS="300000000"), {})
    assert env["OPENCV_IO_MAX_IMAGE_PIXELS"] == "300000000"
