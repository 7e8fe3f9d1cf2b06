"""The CPU image: what SageMaker and compose rely on, checked on the built image."""

from __future__ import annotations

import json

from tests.container.dockerctl import build_command, buildkit_env, docker, run_container, sh


def _inspect(image: str) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]["Config"]


def test_cpu_image_declares_the_sagemaker_contract(cpu_image):
    config = _inspect(cpu_image)
    assert config["Entrypoint"] == ["/opt/program/container/entrypoint"]
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].startswith("/opt/program/container:")
    assert env["IC_MODEL_ZOO_DIR"] == "/opt/model-zoo"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "8080/tcp" in config["ExposedPorts"]


def test_our_train_wins_over_the_toolkit_console_script(cpu_image):
    script = (
        "command -v train; command -v serve; "
        "test -x /opt/venv/bin/train && echo toolkit-train-present; "
        "python -c 'import sagemaker_training, mxnet, gluoncv, cv2; print(\"imports-ok\")'"
    )
    result = run_container(cpu_image, "bash", "-c", script, timeout=120)
    assert result.code == 0, result.log
    lines = result.log.split()
    assert lines[0] == "/opt/program/container/train"
    assert lines[1] == "/opt/program/container/serve"
    assert "toolkit-train-present" in lines  # the toolkit is installed, and does not get in the way
    assert "imports-ok" in lines


def test_image_runs_as_a_non_root_user(cpu_image):
    script = "id -u; touch /opt/ml/model/x /opt/ml/output/failure /opt/ml/scratch/y && echo ok"
    result = run_container(
        cpu_image, "bash", "-c", script, extra=("--user", "1000:1000"), timeout=60
    )
    assert result.code == 0, result.log
    assert result.log.split()[:2] == ["1000", "ok"]


def test_no_build_secrets_or_compilers_left_in_the_image(cpu_image):
    script = "ls /tmp/ca.pem /run/secrets/ca 2>/dev/null; command -v gcc; echo done"
    result = run_container(cpu_image, "bash", "-c", script, timeout=60)
    assert result.log.split() == ["done"], result.log


def test_sample_data_command_writes_class_folders_once(cpu_image, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    first = run_container(
        cpu_image, "sample-data", "/data", mounts=[(data, "/data", "rw")], timeout=120
    )
    assert first.code == 0, first.log
    classes = sorted(p.name for p in (data / "train").iterdir())
    assert len(classes) >= 2
    assert sorted(p.name for p in (data / "validation").iterdir()) == classes
    count = len(list(data.rglob("*.jpg")))
    second = run_container(
        cpu_image, "sample-data", "/data", mounts=[(data, "/data", "rw")], timeout=120
    )
    assert second.code == 0, second.log
    assert "already holds data" in second.log
    assert len(list(data.rglob("*.jpg"))) == count


def test_a_build_that_cannot_download_the_weights_says_why_and_what_to_do(cpu_image):
    """Offline or behind a proxy, the weight bake ends the build with the URLs that failed and
    the ways out, not a traceback. Every source points at a host that cannot resolve; the build
    stage is cached by the cpu_image fixture, so only the bake step runs."""
    unreachable = "http://weights.invalid/"
    sources = ",".join(f"{name}={unreachable}" for name in ("huggingface", "pytorch", "gluoncv"))
    cmd = build_command(
        "oic-test:bake-fails",
        build_args={
            "BASE_IMAGE": "local/debian:bookworm-slim",
            "MXNET_PACKAGE": "mxnet",
            "BAKE_WEIGHTS": "1",
            "WEIGHT_SOURCES": sources,
        },
        target="weights",
    )
    proc = sh(cmd, timeout=900, check=False, env=buildkit_env())
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Could not download ImageNet weights" in out, out[-3000:]
    assert "weights.invalid" in out
    for way_out in ("OIC_BAKE_WEIGHTS=0", "use_pretrained_model=0", "OIC_CA_BUNDLE"):
        assert way_out in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
