"""``oic deploy`` / ``predict`` / ``delete`` against a moto server: the exact requests."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from cloud.cli import main
from tests.cloud.conftest import BUCKET, IMAGE, REGION, ROLE

MODEL_DATA = f"s3://{BUCKET}/oic/output/job-1/output/model.tar.gz"


def deploy_args(*extra: str) -> list[str]:
    return ["deploy", "--job-name", "job-1", "--role", ROLE, "--poll", "0", *extra]


def test_deploy_creates_model_config_and_endpoint_from_the_jobs_model(
    session, recorder, trained_job, capsys
) -> None:
    assert main(deploy_args("--endpoint-name", "pets"), session=session) == 0
    assert recorder.params("CreateModel") == [
        {
            "ModelName": "pets",
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": MODEL_DATA},
        }
    ]
    assert recorder.params("CreateEndpointConfig") == [
        {
            "EndpointConfigName": "pets",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "pets",
                    "InstanceType": "ml.g4dn.xlarge",
                    "InitialInstanceCount": 1,
                }
            ],
        }
    ]
    assert recorder.params("CreateEndpoint") == [
        {"EndpointName": "pets", "EndpointConfigName": "pets"}
    ]
    assert "endpoint pets is InService" in capsys.readouterr().out


def test_deploy_refuses_an_endpoint_name_that_exists(
    session, recorder, trained_job, capsys
) -> None:
    assert main(deploy_args(), session=session) == 0
    created = len(recorder.params("CreateModel"))
    assert main(deploy_args(), session=session) == 2
    err = capsys.readouterr().err
    assert "endpoint 'job-1' already exists" in err and "oic delete job-1" in err
    assert len(recorder.params("CreateModel")) == created


def test_deploy_refuses_a_p2_endpoint(session, recorder, capsys) -> None:
    assert main(deploy_args("--instance-type", "ml.p2.xlarge"), session=session) == 2
    assert "K80" in capsys.readouterr().err
    assert recorder.calls == []


def _queue_endpoint_results(moto_url: str, *bodies: object) -> None:
    results = [{"Body": json.dumps(b), "ContentType": "application/json"} for b in bodies]
    requests.post(
        f"{moto_url}/moto-api/static/sagemaker/endpoint-results",
        json={"account_id": "123456789012", "region": REGION, "results": results},
        timeout=10,
    )


def test_predict_sends_each_image_and_prints_top_classes_by_name(
    session, recorder, trained_job, moto_url, tmp_path: Path, capsys
) -> None:
    main(deploy_args("--endpoint-name", "pets"), session=session)
    image = tmp_path / "cat.jpg"
    image.write_bytes(b"JFIF image bytes")  # moto decodes request bodies as UTF-8
    _queue_endpoint_results(
        moto_url,
        {
            "prediction": [0.1, 0.7, 0.2],
            "predicted_label": "cat",
            "top_k": [
                {"index": 1, "label": "cat", "probability": 0.7},
                {"index": 2, "label": "dog", "probability": 0.2},
            ],
        },
    )
    args = ["predict", str(image), "--endpoint-name", "pets", "--top-k", "2"]
    assert main(args, session=session) == 0
    (invoke,) = recorder.params("InvokeEndpoint")
    assert invoke == {
        "EndpointName": "pets",
        "ContentType": "application/x-image",
        "Accept": "application/json",
        "CustomAttributes": "top_k=2",
        "Body": image.read_bytes(),
    }
    out = capsys.readouterr().out.splitlines()
    assert [line.split() for line in out[-2:]] == [["cat", "0.7000"], ["dog", "0.2000"]]


def test_predict_names_plain_probabilities_from_a_classes_file(
    session, trained_job, moto_url, tmp_path: Path, capsys
) -> None:
    main(deploy_args("--endpoint-name", "pets"), session=session)
    image = tmp_path / "cat.jpg"
    image.write_bytes(b"jpeg")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"classes": ["bird", "cat", "dog"], "multi_label": False}))
    _queue_endpoint_results(moto_url, [0.1, 0.3, 0.6])
    args = ["predict", str(image), "--endpoint-name", "pets", "--classes", str(classes)]
    assert main(args, session=session) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[-3:]] == ["dog", "cat", "bird"]


def test_predict_refuses_missing_files_before_any_request(session, recorder, capsys) -> None:
    assert main(["predict", "nope.jpg", "--endpoint-name", "pets"], session=session) == 2
    assert "no such file: nope.jpg" in capsys.readouterr().err
    assert recorder.calls == []


def test_delete_removes_endpoint_config_and_model(
    session, recorder, trained_job, setup_client, capsys
) -> None:
    main(deploy_args("--endpoint-name", "pets"), session=session)
    assert main(["delete", "pets"], session=session) == 0
    assert recorder.params("DeleteEndpoint") == [{"EndpointName": "pets"}]
    assert recorder.params("DeleteEndpointConfig") == [{"EndpointConfigName": "pets"}]
    assert recorder.params("DeleteModel") == [{"ModelName": "pets"}]
    sm = setup_client("sagemaker")
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    assert main(["delete", "pets"], session=session) == 2
    assert "nothing named 'pets'" in capsys.readouterr().err
