"""Every reader of JSON that comes from outside the product refuses a document nested too deeply
for Python's parser (2,000 ``[``: ``json.loads`` raises ``RecursionError``) with its own clear
error: a 400 from the endpoint, a ``ClientError`` from the trainer, a ``CliError`` from ``oic``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud import endpoints
from cloud import manifests as cloud_manifests
from cloud import settings as cloud_settings
from cloud.errors import CliError
from serve import codecs
from serve import content_types as ct
from serve.app import create_app
from serve.errors import BadRequest
from serve.predictor import ModelInfo
from serve.settings import Settings
from train import config, data, distributed, json_input
from train.errors import ClientError
from train.inputs import channels, manifest
from train.paths import Paths

DEEP = "[" * 2000 + "]" * 2000
DEEP_OBJECT = '{"a": ' * 2000 + "1" + "}" * 2000
TOO_DEEP = "nested too deeply"


def test_json_loads_itself_recurses_out_on_the_deep_documents():
    """The premise: without :mod:`train.json_input` these escape every ``ValueError`` handler."""
    for text in (DEEP, DEEP_OBJECT):
        with pytest.raises(RecursionError):
            json.loads(text)


@pytest.mark.parametrize("text", [DEEP, DEEP_OBJECT, DEEP.encode()])
def test_loads_turns_a_deep_document_into_a_json_decode_error(text):
    with pytest.raises(json.JSONDecodeError, match=TOO_DEEP):
        json_input.loads(text)
    assert json_input.loads('{"b64": ["x"]}') == {"b64": ["x"]}


@pytest.mark.parametrize(
    ("decode", "body"),
    [
        (codecs.decode_json, DEEP.encode()),
        (codecs.decode_json, ('{"instances": ' + DEEP + "}").encode()),
        (codecs.decode_jsonlines, b'"aGk="\n' + DEEP_OBJECT.encode()),
    ],
    ids=["json", "json-instances", "jsonlines-line-2"],
)
def test_request_decoders_answer_400_naming_the_problem(decode, body):
    with pytest.raises(BadRequest, match=TOO_DEEP):
        decode(body, 10_000)


class UnusedPredictor:
    info = ModelInfo((3, 32, 32), 36, ("a", "b"), False)

    def predict(self, batch):
        raise AssertionError("a bad body must not reach the model")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("media_type", [ct.JSON, ct.JSONLINES])
def test_the_endpoint_answers_a_deep_body_with_json_400(tmp_path, media_type):
    app = create_app(Settings.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path)}), UnusedPredictor())
    response = app.test_client().post(
        "/invocations", data=DEEP, headers={"Content-Type": media_type}
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert TOO_DEEP in response.json["error"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


FMT = manifest.LabelFormat(multi_label=False, num_classes=3)
RULES = cloud_manifests.LabelRules(num_classes=3)
ATTRIBUTES = ("source-ref", "class")


def trainer_class_names(tmp: Path) -> object:
    write(tmp / "input" / "data" / "train" / "classes.json", DEEP)
    return data._user_class_names(Paths(tmp), 3)


READERS: dict[str, tuple[Callable[[Path], object], type[Exception], str]] = {
    "hyperparameters.json": (
        lambda tmp: config.load_hyperparameters(DEEP_OBJECT, "hyperparameters.json"),
        ClientError,
        "hyperparameters.json is not valid JSON: nested too deeply",
    ),
    "resourceconfig.json": (
        lambda tmp: distributed.Cluster.from_file(write(tmp / "resourceconfig.json", DEEP)),
        ClientError,
        "is not a usable resourceconfig.json: nested too deeply",
    ),
    "inputdataconfig.json": (
        lambda tmp: channels.read_channels(write(tmp / "inputdataconfig.json", DEEP_OBJECT)),
        ClientError,
        "is not valid JSON: nested too deeply",
    ),
    "classes.json": (trainer_class_names, ClientError, "is not valid JSON: nested too deeply"),
    "manifest line": (
        lambda tmp: manifest.read_manifest(write(tmp / "m.manifest", DEEP), tmp, FMT),
        ClientError,
        "m.manifest:1: not a JSON object",
    ),
    "manifest label": (
        lambda tmp: manifest.read_manifest(
            write(tmp / "m.manifest", json.dumps({"source-ref": "a.jpg", "class": DEEP})),
            tmp,
            FMT,
        ),
        ClientError,
        "is not a class number",
    ),
    "oic manifest line": (
        lambda tmp: cloud_manifests.check_manifest(
            write(tmp / "m.manifest", DEEP_OBJECT), ATTRIBUTES, RULES
        ),
        CliError,
        "line 1: not JSON (nested too deeply",
    ),
    "oic multi-label value": (
        lambda tmp: cloud_manifests.check_manifest(
            write(tmp / "m.manifest", json.dumps({"source-ref": "s3://b/a.jpg", "class": DEEP})),
            ATTRIBUTES,
            cloud_manifests.LabelRules(multi_label=True, num_classes=3),
        ),
        CliError,
        "is not a JSON array",
    ),
    "oic hyperparameters": (
        lambda tmp: cloud_settings.load_hyperparameters(write(tmp / "hp.json", DEEP)),
        CliError,
        "is not valid JSON: nested too deeply",
    ),
    "oic classes.json": (
        lambda tmp: endpoints.load_classes(write(tmp / "classes.json", DEEP)),
        CliError,
        "is not valid JSON: nested too deeply",
    ),
}


@pytest.mark.parametrize("name", READERS)
def test_each_reader_of_outside_json_refuses_a_deep_document_clearly(name, tmp_path):
    read, error, words = READERS[name]
    with pytest.raises(error) as raised:
        read(tmp_path)
    assert words in str(raised.value)


def test_a_deep_pipe_mode_label_record_is_not_a_label():
    with pytest.raises(ValueError, match="not a label"):
        manifest.parse_label(DEEP.encode(), FMT)


@pytest.mark.parametrize(
    "read",
    [
        lambda path: manifest.read_manifest(path, path.parent, FMT),
        lambda path: cloud_manifests.check_manifest(path, ATTRIBUTES, RULES),
    ],
    ids=["trainer", "oic"],
)
def test_a_binary_manifest_is_refused_as_not_utf8_text(read, tmp_path):
    path = tmp_path / "m.manifest"
    path.write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not a manifest")
    with pytest.raises((ClientError, CliError), match="is not UTF-8 text"):
        read(path)
