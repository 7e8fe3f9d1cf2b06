"""``oic deploy`` / ``predict`` / ``delete``: a real-time endpoint from a training job's model.

Deploy creates a model (the job's image and ``model.tar.gz``), an endpoint configuration and an
endpoint, all named after the endpoint, and refuses a name that is taken. Predict sends each
file as ``application/x-image`` and asks the server for the top classes by name (SageMaker
custom attribute ``top_k``), falling back to ``--classes`` for plain probability lists.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from cloud.aws import Aws, check_role
from cloud.errors import CliError, JobFailed
from cloud.settings import check_instance_type, role_from_env
from train import json_input

VARIANT = "AllTraffic"


def create_model_request(name: str, image: str, model_data: str, role: str) -> dict[str, Any]:
    """The CreateModel request: the serving image and the model.tar.gz (deploy, transform)."""
    return {
        "ModelName": name,
        "ExecutionRoleArn": role,
        "PrimaryContainer": {"Image": image, "ModelDataUrl": model_data},
    }


def model_requests(
    name: str, image: str, model_data: str, role: str, instance_type: str, count: int
) -> list[tuple[str, dict[str, Any]]]:
    """The CreateModel, CreateEndpointConfig and CreateEndpoint requests, in order."""
    return [
        ("CreateModel", create_model_request(name, image, model_data, role)),
        (
            "CreateEndpointConfig",
            {
                "EndpointConfigName": name,
                "ProductionVariants": [
                    {
                        "VariantName": VARIANT,
                        "ModelName": name,
                        "InstanceType": instance_type,
                        "InitialInstanceCount": count,
                    }
                ],
            },
        ),
        ("CreateEndpoint", {"EndpointName": name, "EndpointConfigName": name}),
    ]


def _not_found(exc: ClientError) -> bool:
    """SageMaker answers Describe*/Delete* of a missing resource with a ValidationException."""
    return exc.response.get("Error", {}).get("Code") == "ValidationException"


def exists(call: Any, **kwargs: Any) -> bool:
    """Whether the Describe* ``call`` finds the resource."""
    try:
        call(**kwargs)
        return True
    except ClientError as exc:
        if _not_found(exc):
            return False
        raise


def check_free(sm: Any, name: str) -> None:
    """Refuse an endpoint (or its model / configuration) name that exists."""
    if exists(sm.describe_endpoint, EndpointName=name):
        raise CliError(
            f"endpoint {name!r} already exists: pick another --endpoint-name, or remove it "
            f"with `oic delete {name}`"
        )
    for what, call, key in (
        ("endpoint configuration", sm.describe_endpoint_config, "EndpointConfigName"),
        ("model", sm.describe_model, "ModelName"),
    ):
        if exists(call, **{key: name}):
            raise CliError(
                f"a SageMaker {what} named {name!r} exists (left over from an earlier deploy?): "
                f"remove it with `oic delete {name}` or pick another --endpoint-name"
            )


def job_model(sm: Any, job_name: str) -> tuple[str, str]:
    """Image and model.tar.gz of a completed training job."""
    job = sm.describe_training_job(TrainingJobName=job_name)
    if job["TrainingJobStatus"] != "Completed":
        raise CliError(
            f"training job {job_name} is {job['TrainingJobStatus']}, not Completed: "
            "deploy a job that finished"
        )
    return job["AlgorithmSpecification"]["TrainingImage"], job["ModelArtifacts"]["S3ModelArtifacts"]


def deploy(args: argparse.Namespace, aws: Aws) -> int:
    """Run ``oic deploy``."""
    instance_type = check_instance_type(args.instance_type)
    name = args.endpoint_name or args.job_name
    if args.dry_run:
        role = args.role or role_from_env() or "arn:aws:iam::<account-id>:role/<--role>"
        image, data = args.image or "<image of the job>", f"<model.tar.gz of {args.job_name}>"
    else:
        role = check_role(args.role or role_from_env())
        sm = aws.client("sagemaker")
        image, data = job_model(sm, args.job_name)
        image = args.image or image
        check_free(sm, name)
    requests = model_requests(name, image, data, role, instance_type, args.instance_count)
    if args.dry_run:
        for operation, request in requests:
            print(f"{operation} {json.dumps(request, indent=2)}")
        return 0
    for operation, request in requests:
        getattr(sm, snake(operation))(**request)
        print(f"{operation}: {name}")
    if not args.no_wait:
        _wait_in_service(sm, name, args.poll)
    print(f"endpoint {name} is InService\nnext: oic predict --endpoint-name {name} IMAGE.jpg")
    return 0


def snake(operation: str) -> str:
    """``CreateModel`` to ``create_model`` (the boto3 method)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _wait_in_service(sm: Any, name: str, poll: float) -> None:
    waiter = sm.get_waiter("endpoint_in_service")
    try:
        waiter.wait(EndpointName=name, WaiterConfig={"Delay": max(poll, 1), "MaxAttempts": 180})
    except WaiterError:
        reason = sm.describe_endpoint(EndpointName=name).get("FailureReason", "no reason given")
        raise JobFailed(f"endpoint {name} did not come up: {reason}") from None


def load_classes(path: Path | None) -> list[str] | None:
    """Class names from a ``classes.json`` (``{"classes": [...]}`` or a list) or ``.txt``.

    Raises:
        CliError: a ``.json`` file that is not JSON or holds no list of names.
    """
    if path is None:
        return None
    if path.suffix == ".json":
        try:
            doc = json_input.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CliError(f"{path} is not valid JSON: {exc}") from None
        names = doc.get("classes") if isinstance(doc, dict) else doc
        if not isinstance(names, list):
            raise CliError(f'{path} must hold a list of class names or {{"classes": [...]}}')
        return [str(c) for c in names]
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def format_prediction(body: Any, classes: list[str] | None, top_k: int) -> list[str]:
    """``label  probability`` lines, best first, from either response shape."""
    if isinstance(body, dict) and "top_k" in body:
        return [f"{c['label']:<24} {c['probability']:.4f}" for c in body["top_k"][:top_k]]
    probabilities = body["prediction"] if isinstance(body, dict) else body
    order = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:top_k]
    names = classes or [str(i) for i in range(len(probabilities))]
    return [f"{names[i]:<24} {probabilities[i]:.4f}" for i in order]


def predict(args: argparse.Namespace, aws: Aws) -> int:
    """Run ``oic predict FILE...``."""
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise CliError(f"no such file: {', '.join(missing)}")
    classes = load_classes(args.classes)
    runtime = None if args.dry_run else aws.client("sagemaker-runtime")
    for path in args.files:
        request = {
            "EndpointName": args.endpoint_name,
            "ContentType": "application/x-image",
            "Accept": "application/json",
            "CustomAttributes": f"top_k={args.top_k}",
        }
        if args.dry_run:
            print(
                f"InvokeEndpoint {json.dumps(request)} Body=<{path}, {path.stat().st_size} bytes>"
            )
            continue
        body = _invoke(runtime, path, request)
        print(path)
        for line in format_prediction(body, classes, args.top_k):
            print(f"  {line}")
    return 0


def _invoke(runtime: Any, path: Path, request: dict[str, str]) -> Any:
    """InvokeEndpoint with the file's bytes; the model's error becomes a :class:`CliError`."""
    try:
        response = runtime.invoke_endpoint(Body=path.read_bytes(), **request)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ModelError":
            raise
        message = exc.response["Error"].get("Message")
        raise CliError(f"the endpoint refused {path}: {message}") from None
    return json.loads(response["Body"].read())


def delete(args: argparse.Namespace, aws: Aws) -> int:
    """Run ``oic delete NAME``: the endpoint, its configuration and its model."""
    name = args.endpoint_name
    requests = [
        ("DeleteEndpoint", {"EndpointName": name}),
        ("DeleteEndpointConfig", {"EndpointConfigName": name}),
        ("DeleteModel", {"ModelName": name}),
    ]
    if args.keep_model:
        requests.pop()
    if args.dry_run:
        for operation, request in requests:
            print(f"{operation} {json.dumps(request)}")
        return 0
    sm = aws.client("sagemaker")
    deleted = 0
    for operation, request in requests:
        try:
            getattr(sm, snake(operation))(**request)
            deleted += 1
            print(f"{operation}: {name}")
        except ClientError as exc:
            if not _not_found(exc):
                raise
            print(f"{operation}: {name} was not there")
    if not deleted:
        raise CliError(f"nothing named {name!r} to delete: check the name and --region")
    return 0
