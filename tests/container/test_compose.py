"""`docker compose --profile cpu up` on the generated sample data: sample data -> train -> serve.

Everything the user would touch is pointed at temporary folders through the OIC_* settings of
docker-compose.yml, so the run leaves the work tree alone. The build uses compose's own BuildKit
build (cache hits after the cpu_image fixture) without baked weights, so the hyperparameters
train from scratch.
"""

from __future__ import annotations

import json
import os
import uuid

from tests.container.dockerctl import HOST_CA_BUNDLE, REPO, http, sh, wait_for_ping
from tests.container.test_serve import jpeg_bytes
from tests.container.test_train import assert_model_dir
from tests.ports import free_port

HYPERPARAMETERS = {
    "num_layers": "18",
    "use_pretrained_model": "0",
    "epochs": "2",
    "mini_batch_size": "16",
    "learning_rate": "0.01",
    "image_shape": "3,64,64",
    "resize": "72",
}


class _ComposeService:
    """Enough of a Container for wait_for_ping: is serve-cpu still running?"""

    def __init__(self, compose: list[str], env: dict[str, str]):
        self.compose, self.env = compose, env

    def running(self) -> bool:
        ps = [*self.compose, "ps", "--status", "running", "--services"]
        return "serve-cpu" in sh(ps, timeout=60, cwd=REPO, env=self.env).stdout.split()

    def logs(self) -> str:
        return ""


def test_compose_cpu_profile_trains_on_sample_data_and_serves(cpu_image, tmp_path):
    port = free_port()
    (tmp_path / "data").mkdir()
    hps = tmp_path / "hyperparameters.json"
    hps.write_text(json.dumps(HYPERPARAMETERS))
    env = {
        **os.environ,
        "OIC_DATA_DIR": str(tmp_path / "data"),
        "OIC_HYPERPARAMETERS": str(hps),
        "OIC_MODEL_DIR": str(tmp_path / "model"),
        "OIC_OUTPUT_DIR": str(tmp_path / "output"),
        "OIC_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "OIC_PORT": str(port),
        "OIC_BAKE_WEIGHTS": "0",
    }
    if HOST_CA_BUNDLE.exists():
        env["OIC_CA_BUNDLE"] = str(HOST_CA_BUNDLE)
    env.pop("COMPOSE_PROFILES", None)
    compose = ["docker", "compose", "-p", f"oic-test-{uuid.uuid4().hex[:8]}", "--profile", "cpu"]
    try:
        # `up -d` returns once serve has started, i.e. after sample-data and train succeeded.
        up = sh([*compose, "up", "-d", "--build"], timeout=1800, cwd=REPO, env=env, check=False)
        logs = sh([*compose, "logs", "--no-color"], timeout=120, cwd=REPO, env=env, check=False)
        assert up.returncode == 0, up.stdout + up.stderr + logs.stdout
        services = sh(
            [*compose, "ps", "-a", "--format", "{{.Service}}"], timeout=60, cwd=REPO, env=env
        ).stdout.split()
        assert sorted(services) == ["sample-data-cpu", "serve-cpu", "train-cpu"], services
        assert list((tmp_path / "data" / "train").iterdir()), "no sample data written"
        assert_model_dir(tmp_path / "model")
        assert (tmp_path / "output" / "data").is_dir(), "no metrics/plots in ./output/data"
        assert (tmp_path / "output" / "data" / "report.html").is_file(), "no report page"
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_ping(f"{base}/ping", timeout=240, alive=_ComposeService(compose, env))
        except AssertionError as err:
            logs = sh([*compose, "logs", "--no-color"], timeout=120, cwd=REPO, env=env)
            raise AssertionError(f"{err}\n--- compose logs ---\n{logs.stdout[-8000:]}") from None
        response = http(
            f"{base}/invocations",
            data=jpeg_bytes(),
            headers={"Content-Type": "application/x-image"},
        )
        assert response.status == 200, (response.status, response.body[:2000])
        probabilities = json.loads(response.body)
        classes = sorted(p.name for p in (tmp_path / "data" / "train").iterdir())
        assert len(probabilities) == len(classes)
        page = http(f"{base}/")  # the try-it page, from the image's nginx and app
        assert page.status == 200 and page.content_type.startswith("text/html"), page
        assert b'id="oic-config"' in page.body and b"invocations" in page.body
        report = http(f"{base}/report")  # the job's report, saved beside the model
        assert report.status == 200 and b"Training report" in report.body, report.status
    finally:
        down = sh(
            [*compose, "down", "-v", "--timeout", "30"], timeout=300, cwd=REPO, env=env, check=False
        )
    assert down.returncode == 0, down.stdout + down.stderr


def _config(*profile: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OIC_", "COMPOSE_"))}
    cmd = ["docker", "compose", *profile, "config", "--format", "json"]
    return json.loads(sh(cmd, timeout=60, cwd=REPO, env=env).stdout)["services"]


def _reserves_gpu(service: dict) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return any(d.get("driver") == "nvidia" for d in devices.get("devices", []))


def test_compose_default_is_the_gpu_pipeline_and_cpu_profile_needs_no_gpu(docker_engine):
    """The GPU path cannot run here, so check its configuration: `up` without a profile means
    the GPU services (via .env's COMPOSE_PROFILES), and `--profile cpu` creates none of them."""
    default = _config()
    assert sorted(default) == ["sample-data", "serve", "train"]
    assert _reserves_gpu(default["train"]) and _reserves_gpu(default["serve"])
    assert default["train"]["image"] == "oic:gpu"
    assert "MXNET_PACKAGE" not in default["train"]["build"].get("args", {})

    cpu = _config("--profile", "cpu")
    assert sorted(cpu) == ["sample-data-cpu", "serve-cpu", "train-cpu"]
    assert not any(_reserves_gpu(service) for service in cpu.values())
    assert cpu["train-cpu"]["build"]["args"]["MXNET_PACKAGE"] == "mxnet"
    for services in (default, cpu):
        train = next(s for name, s in services.items() if name.startswith("train"))
        serve = next(s for name, s in services.items() if name.startswith("serve"))
        targets = {v["target"] for v in train["volumes"]}
        assert {
            "/opt/ml/input/data",
            "/opt/ml/input/config/hyperparameters.json",
            "/opt/ml/model",
            "/opt/ml/output",
            "/opt/ml/checkpoints",
        } <= targets
        assert list(serve["depends_on"].values())[0]["condition"] == (
            "service_completed_successfully"
        )
        assert serve["ports"][0]["host_ip"] == "127.0.0.1"
        assert serve["ports"][0]["target"] == 8080
