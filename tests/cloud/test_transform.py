"""``oic transform`` against a moto server: the exact CreateModel / CreateTransformJob requests,
the upload of a local folder, waiting, the ``.out`` files, and each bad input refused before any
upload or job."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from cloud.cli import main
from tests.cloud.conftest import BUCKET, IMAGE, REGION, ROLE
from tests.datagen import make_image, write_jpeg

MODEL_DATA = f"s3://{BUCKET}/oic/output/job-1/output/model.tar.gz"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Four JPEGs, one in a sub-folder."""
    folder = tmp_path / "to-classify"
    rng = random.Random(3)
    for rel in ("a.jpg", "b.jpg", "c.jpeg", "more/d.jpg"):
        write_jpeg(folder / rel, make_image(rng.randrange(3), rng))
    return folder


def request_for(name: str, model: str, input_uri: str, output_uri: str) -> dict[str, Any]:
    return {
        "TransformJobName": name,
        "ModelName": model,
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": 6,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": "application/x-image",
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": output_uri,
            "Accept": "application/jsonlines",
            "AssembleWith": "None",
        },
        "TransformResources": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1},
    }


def run(*args: str, session: Any) -> int:
    return main(["transform", *args, "--bucket", BUCKET, "--poll", "0"], session=session)


def test_a_local_folder_is_uploaded_and_transformed_with_a_model_from_the_job(
    session, recorder, bucket, trained_job, images, setup_client, tmp_path, capsys
) -> None:
    output = f"s3://{BUCKET}/oic/transform/output/tj-1/"

    def job_writes_outputs(params: dict[str, Any], **_: Any) -> None:
        for key in ("a.jpg", "more/d.jpg"):
            body = json.dumps({"prediction": [0.2, 0.7, 0.1]}) + "\n"
            setup_client("s3").put_object(
                Bucket=BUCKET, Key=f"oic/transform/output/tj-1/{key}.out", Body=body
            )

    session.events.register(
        "before-parameter-build.sagemaker.DescribeTransformJob", job_writes_outputs
    )
    download = tmp_path / "results"
    args = [str(images), "--training-job", "job-1", "--role", ROLE, "--job-name", "tj-1"]
    assert run(*args, "--download", str(download), session=session) == 0
    assert recorder.params("CreateModel") == [
        {
            "ModelName": "tj-1",
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": MODEL_DATA},
        }
    ]
    input_uri = f"s3://{BUCKET}/oic/transform/input/tj-1/"
    assert recorder.params("CreateTransformJob") == [request_for("tj-1", "tj-1", input_uri, output)]
    assert {p["Key"] for p in recorder.params("PutObject")} == {
        f"oic/transform/input/tj-1/{rel}" for rel in ("a.jpg", "b.jpg", "c.jpeg", "more/d.jpg")
    }
    ops = recorder.ops("sagemaker")
    assert ops.index("CreateModel") < ops.index("CreateTransformJob")
    out = capsys.readouterr().out
    assert "tj-1: Completed" in out and f"results: {output} (2 .out files" in out
    answer = json.loads((download / "more" / "d.jpg.out").read_text())
    assert answer == {"prediction": [0.2, 0.7, 0.1]}


def _keys_under(s3: Any, uri: str) -> set[str]:
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"].removeprefix(prefix) for o in listed}


def test_each_run_transforms_exactly_the_images_of_its_folder(
    session, recorder, bucket, setup_client, images, tmp_path, capsys
) -> None:
    """A second run on a smaller folder of the same name reads only that folder's images."""
    setup_client("sagemaker").create_model(
        ModelName="pets", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    smaller = tmp_path / "again" / images.name
    smaller.mkdir(parents=True)
    (smaller / "b.jpg").write_bytes((images / "b.jpg").read_bytes())
    s3 = setup_client("s3")
    for folder, name in ((images, "tj-big"), (smaller, "tj-small")):
        args = [str(folder), "--model-name", "pets", "--job-name", name, "--no-wait"]
        assert run(*args, session=session) == 0
    first, second = (
        r["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        for r in recorder.params("CreateTransformJob")
    )
    assert _keys_under(s3, first) == {"a.jpg", "b.jpg", "c.jpeg", "more/d.jpg"}
    assert _keys_under(s3, second) == {"b.jpg"}
    out = capsys.readouterr().out
    assert f"4 images under {first}" in out and f"1 images under {second}" in out


def test_a_rerun_under_the_same_job_name_deletes_what_the_folder_no_longer_holds(
    session, recorder, bucket, setup_client, images, capsys
) -> None:
    """E.g. CreateTransformJob refused after the upload, then the folder trimmed and rerun."""
    setup_client("sagemaker").create_model(
        ModelName="pets", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    s3 = setup_client("s3")
    s3.put_object(Bucket=BUCKET, Key="oic/transform/input/tj-4/gone.jpg", Body=b"\xff\xd8")
    args = [str(images), "--model-name", "pets", "--job-name", "tj-4", "--no-wait"]
    assert run(*args, session=session) == 0
    uri = f"s3://{BUCKET}/oic/transform/input/tj-4/"
    assert _keys_under(s3, uri) == {"a.jpg", "b.jpg", "c.jpeg", "more/d.jpg"}
    out = capsys.readouterr().out
    assert f"deleted 1 not in {images}" in out and f"4 images under {uri}" in out


def test_an_s3_prefix_with_an_existing_model(
    session, recorder, bucket, setup_client, images, capsys
) -> None:
    s3 = setup_client("s3")
    for path in images.rglob("*.jp*g"):
        s3.upload_file(str(path), BUCKET, f"incoming/{path.name}")
    setup_client("sagemaker").create_model(
        ModelName="pets", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    args = ["s3://oic-test-bucket/incoming", "--model-name", "pets", "--job-name", "tj-2"]
    extra = ["--output", "s3://oic-test-bucket/results/", "--max-concurrent-transforms", "4"]
    assert run(*args, *extra, "--accept", "application/json", session=session) == 0
    expected = request_for(
        "tj-2", "pets", "s3://oic-test-bucket/incoming/", "s3://oic-test-bucket/results/"
    )
    expected["MaxConcurrentTransforms"] = 4
    expected["TransformOutput"]["Accept"] = "application/json"
    assert recorder.params("CreateTransformJob") == [expected]
    assert "CreateModel" not in recorder.ops() and "PutObject" not in recorder.ops()
    assert "4 images under s3://oic-test-bucket/incoming/" in capsys.readouterr().out


def test_files_the_job_would_fail_on_are_refused_before_any_request(
    session, recorder, images, capsys
) -> None:
    (images / "notes.txt").write_text("not an image")
    (images / "huge.jpg").write_bytes(b"\xff\xd8" + b"\0" * (2 * 1024 * 1024))
    args = [str(images), "--model-name", "pets", "--max-payload", "1"]
    assert run(*args, session=session) == 2
    err = capsys.readouterr().err
    assert "2 of 6 input files would fail the transform job" in err
    assert "huge.jpg (over --max-payload 1 MB)" in err and "notes.txt (not a recognised" in err
    assert recorder.calls == []


def test_an_s3_prefix_with_objects_that_are_not_images_is_refused(
    session, recorder, bucket, setup_client, capsys
) -> None:
    s3 = setup_client("s3")
    s3.put_object(Bucket=BUCKET, Key="incoming/a.jpg", Body=b"\xff\xd8")
    s3.put_object(Bucket=BUCKET, Key="incoming/_SUCCESS", Body=b"")
    args = ["s3://oic-test-bucket/incoming/", "--model-name", "pets"]
    assert run(*args, session=session) == 2
    assert "incoming/_SUCCESS (no image extension)" in capsys.readouterr().err
    assert "CreateTransformJob" not in recorder.ops()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["s3://b/images/", "--model-name", "m", "--output", "s3://b/images/out/"], "is inside"),
        (["s3://b/images", "--model-name", "m", "--output", "s3://b/images/"], "is inside"),
        (["s3://b/images/"], "pass either --model-name MODEL or --training-job JOB"),
        (["s3://b/x/", "--model-name", "m", "--instance-type", "ml.p2.xlarge"], "K80"),
    ],
)
def test_bad_options_fail_before_any_request(session, recorder, capsys, args, message) -> None:
    assert run(*args, session=session) == 2
    assert message in capsys.readouterr().err
    assert recorder.calls == []


def test_an_output_beside_the_input_is_fine(
    session, recorder, bucket, setup_client, capsys
) -> None:
    setup_client("s3").put_object(Bucket=BUCKET, Key="images/a.png", Body=b"png")
    setup_client("sagemaker").create_model(
        ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    args = ["s3://oic-test-bucket/images", "--model-name", "m", "--no-wait"]
    assert run(*args, "--output", "s3://oic-test-bucket/images-out/", session=session) == 0
    assert "describe-transform-job" in capsys.readouterr().out
    (request,) = recorder.params("CreateTransformJob")
    assert request["TransformOutput"]["S3OutputPath"] == "s3://oic-test-bucket/images-out/"


def test_a_missing_model_is_named(session, recorder, bucket, images, capsys) -> None:
    assert run(str(images), "--model-name", "nope", session=session) == 2
    assert "no SageMaker model named 'nope'" in capsys.readouterr().err
    assert "PutObject" not in recorder.ops()


def test_a_failed_transform_job_exits_1_with_its_reason(
    session, bucket, trained_job, images, capsys
) -> None:
    def fail(params: dict[str, Any], **_: Any) -> None:
        from moto.sagemaker.models import sagemaker_backends

        job = sagemaker_backends["123456789012"][REGION].transform_jobs[params["TransformJobName"]]
        job.transform_job_status = "Failed"
        job.failure_reason = "ClientError: See job logs for more information"

    session.events.register("before-parameter-build.sagemaker.DescribeTransformJob", fail)
    args = [str(images), "--training-job", "job-1", "--role", ROLE, "--job-name", "tj-3"]
    assert run(*args, session=session) == 1
    err = capsys.readouterr().err
    assert "transform job tj-3 failed: ClientError: See job logs" in err
    assert "/aws/sagemaker/TransformJobs" in err


def test_dry_run_prints_the_requests_and_sends_nothing(session, recorder, images, capsys) -> None:
    args = [str(images), "--training-job", "job-1", "--role", ROLE, "--job-name", "dry"]
    assert run(*args, "--dry-run", session=session) == 0
    out = capsys.readouterr().out
    assert f"would upload 4 files to s3://{BUCKET}/oic/transform/input/dry/" in out
    request = json.loads(out[out.index("CreateTransformJob ") + len("CreateTransformJob ") :])
    assert request == request_for(
        "dry",
        "dry",
        f"s3://{BUCKET}/oic/transform/input/dry/",
        f"s3://{BUCKET}/oic/transform/output/dry/",
    )
    assert recorder.calls == []
