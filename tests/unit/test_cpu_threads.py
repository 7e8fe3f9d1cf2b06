"""MXNet's CPU compute threads: one per physical core unless the user chose (train.devices)."""

from __future__ import annotations

import os

import pytest

from train import devices


def test_physical_cores_is_within_the_usable_cpus():
    usable = len(os.sched_getaffinity(0))
    assert 1 <= devices.physical_cores() <= usable


def test_threads_default_to_the_physical_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MXNET_OMP_MAX_THREADS", raising=False)
    monkeypatch.setattr(devices, "physical_cores", lambda: 6)
    devices.configure_cpu_threads()
    assert os.environ["OMP_NUM_THREADS"] == "6"


@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS"])
def test_a_users_thread_setting_is_kept(monkeypatch, variable):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MXNET_OMP_MAX_THREADS", raising=False)
    monkeypatch.setenv(variable, "3")
    monkeypatch.setattr(devices, "physical_cores", lambda: 6)
    devices.configure_cpu_threads()
    assert os.environ[variable] == "3"
    if variable == "MXNET_OMP_MAX_THREADS":
        assert "OMP_NUM_THREADS" not in os.environ


def test_the_pytorch_engines_openmp_threads_sleep_when_idle_unless_the_user_chose():
    from train.engines.launch import engine_environment

    assert engine_environment({"PATH": "/bin"}) == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE"}
    assert engine_environment({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"
