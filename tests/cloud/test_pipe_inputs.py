"""``oic train --input-mode pipe`` against a moto server: RecordIO channels and augmented
manifests in the exact CreateTrainingJob request, and each rule of the built-in checked before
any request is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloud.cli import main
from tests.cloud.conftest import BUCKET, HYPERPARAMETERS, IMAGE, ROLE

TRAIN_IMAGES, VALIDATION_IMAGES = 6, 3


def write_rec(path: Path, count: int) -> None:
    """A RecordIO file written by MXNet's own writer (``mxnet.recordio``), not by this project."""
    from mxnet import recordio

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = recordio.MXRecordIO(str(path), "w")
    for i in range(count):
        writer.write(recordio.pack(recordio.IRHeader(0, float(i % 3), i, 0), b"\xff\xd8jpeg"))
    writer.close()


@pytest.fixture
def rec_channels(tmp_path: Path) -> Path:
    data = tmp_path / "pets-rec"
    write_rec(data / "train" / "train.rec", TRAIN_IMAGES)
    write_rec(data / "validation" / "validation.rec", VALIDATION_IMAGES)
    return data


def write_hps(tmp_path: Path, **extra: str) -> Path:
    path = tmp_path / "hps.json"
    path.write_text(json.dumps({**HYPERPARAMETERS, "num_classes": "3", **extra}))
    return path


def write_manifest(path: Path, labels: list[Any], label_key: str = "class") -> Path:
    lines = [
        json.dumps(
            {
                "source-ref": f"s3://gt-bucket/pets/{i:03d}.jpg",
                label_key: label,
                f"{label_key}-metadata": {"confidence": 0.9, "human-annotated": "yes"},
            }
        )
        for i, label in enumerate(labels)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def manifests(tmp_path: Path) -> tuple[Path, Path]:
    """Ground Truth-style manifests with string, number and float labels."""
    train = write_manifest(tmp_path / "train.manifest", ["0", 1, 2.0, "1", 0, "2"])
    validation = write_manifest(tmp_path / "validation.manifest", [0, "1", 2])
    return train, validation


def run(args: list[str], session: Any) -> int:
    base = ["train", "--image", IMAGE, "--role", ROLE, "--bucket", BUCKET, "--poll", "0"]
    return main([*base, *args], session=session)


def test_pipe_mode_recordio_streams_train_and_validation(
    session, recorder, bucket, pushed_image, rec_channels, tmp_path, setup_client
) -> None:
    hps = write_hps(tmp_path, num_training_samples=str(TRAIN_IMAGES))
    args = ["--data", str(rec_channels), "--hyperparameters", str(hps), "--input-mode", "pipe"]
    assert run([*args, "--job-name", "pipe-1"], session) == 0
    (request,) = recorder.params("CreateTrainingJob")
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
    assert request["InputDataConfig"] == [
        {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{BUCKET}/oic/data/pets-rec/{name}/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": "application/x-recordio",
            "CompressionType": "None",
            "InputMode": "Pipe",
        }
        for name in ("train", "validation")
    ]
    keys = {o["Key"] for o in setup_client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {
        "oic/data/pets-rec/train/train.rec",
        "oic/data/pets-rec/validation/validation.rec",
    }


def test_a_model_channel_stays_in_file_mode(
    session, recorder, bucket, pushed_image, rec_channels, tmp_path
) -> None:
    (rec_channels / "model").mkdir()
    (rec_channels / "model" / "model.tar.gz").write_bytes(b"tarball")
    hps = write_hps(tmp_path, num_training_samples=str(TRAIN_IMAGES))
    args = ["--data", str(rec_channels), "--hyperparameters", str(hps), "--input-mode", "pipe"]
    assert run(args, session) == 0
    (request,) = recorder.params("CreateTrainingJob")
    modes = {c["ChannelName"]: c["InputMode"] for c in request["InputDataConfig"]}
    assert modes == {"train": "Pipe", "validation": "Pipe", "model": "File"}


@pytest.mark.parametrize(
    ("extra_hps", "message"),
    [
        ({}, "Pipe mode needs num_training_samples in the hyperparameters"),
        ({"num_training_samples": "6", "num_classes": ""}, "Pipe mode needs num_classes"),
        ({"num_training_samples": "100"}, "the training data holds 6 images"),
    ],
)
def test_num_training_samples_is_required_and_must_match(
    session, recorder, rec_channels, tmp_path, capsys, extra_hps, message
) -> None:
    hps = write_hps(tmp_path, **extra_hps)
    args = ["--data", str(rec_channels), "--hyperparameters", str(hps), "--input-mode", "pipe"]
    assert run(args, session) == 2
    assert message in capsys.readouterr().err
    assert recorder.calls == []


def test_pipe_mode_refuses_an_index_file_in_a_streamed_channel(
    session, recorder, rec_channels, tmp_path, capsys
) -> None:
    (rec_channels / "train" / "train.idx").write_text("0\t0\n")
    hps = write_hps(tmp_path, num_training_samples=str(TRAIN_IMAGES))
    args = ["--data", str(rec_channels), "--hyperparameters", str(hps), "--input-mode", "pipe"]
    assert run(args, session) == 2
    err = capsys.readouterr().err
    assert "must hold only .rec files" in err and "train.idx" in err
    assert recorder.calls == []


def test_pipe_mode_refuses_stale_objects_under_a_streamed_prefix(
    session, recorder, bucket, pushed_image, rec_channels, tmp_path, setup_client, capsys
) -> None:
    """An .idx left by an earlier File-mode upload of the same data set would be streamed."""
    stale = "oic/data/pets-rec/train/train.idx"
    setup_client("s3").put_object(Bucket=BUCKET, Key=stale, Body=b"0\t0\n")
    hps = write_hps(tmp_path, num_training_samples=str(TRAIN_IMAGES))
    args = ["--data", str(rec_channels), "--hyperparameters", str(hps), "--input-mode", "pipe"]
    assert run(args, session) == 2
    err = capsys.readouterr().err
    assert f"also holds {stale}" in err and "aws s3 rm" in err
    assert "PutObject" not in recorder.ops() and "CreateTrainingJob" not in recorder.ops()


def test_pipe_mode_refuses_a_file_that_is_not_recordio(
    session, recorder, rec_channels, tmp_path, capsys
) -> None:
    (rec_channels / "validation" / "validation.rec").write_bytes(b"\xff\xd8 a jpeg, renamed")
    hps = write_hps(tmp_path, num_training_samples=str(TRAIN_IMAGES))
    args = ["--data", str(rec_channels), "--hyperparameters", str(hps), "--input-mode", "pipe"]
    assert run(args, session) == 2
    assert "validation.rec is not a RecordIO file" in capsys.readouterr().err
    assert recorder.calls == []


def test_pipe_mode_refuses_the_lst_layout(
    session, recorder, prepared_data, tmp_path, capsys
) -> None:
    hps = write_hps(tmp_path, num_training_samples="12")
    args = ["--data", str(prepared_data), "--hyperparameters", str(hps), "--input-mode", "pipe"]
    assert run(args, session) == 2
    assert "trains in File mode: drop --input-mode pipe" in capsys.readouterr().err
    assert recorder.calls == []


def manifest_args(train: Path, validation: Path, hps: Path, names: str = "source-ref,class"):
    return [
        "--manifest",
        str(train),
        "--validation-manifest",
        str(validation),
        "--attribute-names",
        names,
        "--hyperparameters",
        str(hps),
        "--input-mode",
        "pipe",
    ]


def test_manifests_are_uploaded_and_read_as_augmented_manifest_files(
    session, recorder, bucket, pushed_image, manifests, tmp_path, setup_client
) -> None:
    hps = write_hps(tmp_path, num_training_samples="6")
    args = [*manifest_args(*manifests, hps), "--job-name", "gt-1", "--dataset", "gt"]
    assert run(args, session) == 0
    (request,) = recorder.params("CreateTrainingJob")
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
    assert request["InputDataConfig"] == [
        {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "AugmentedManifestFile",
                    "S3Uri": f"s3://{BUCKET}/oic/data/gt/{name}/{name}.manifest",
                    "S3DataDistributionType": "FullyReplicated",
                    "AttributeNames": ["source-ref", "class"],
                }
            },
            "ContentType": "application/x-recordio",
            "CompressionType": "None",
            "InputMode": "Pipe",
            "RecordWrapperType": "RecordIO",
        }
        for name in ("train", "validation")
    ]
    s3 = setup_client("s3")
    body = s3.get_object(Bucket=BUCKET, Key="oic/data/gt/train/train.manifest")["Body"].read()
    assert body == manifests[0].read_bytes()  # the manifest goes up unchanged


def test_class_id_multi_label_manifests_say_so_in_the_content_type(
    session, recorder, bucket, pushed_image, tmp_path
) -> None:
    train = write_manifest(tmp_path / "t.manifest", [[0, 2], "[1]", [], [0, 1, 2]], "labels")
    validation = write_manifest(tmp_path / "v.manifest", [[1], [2, 0]], "labels")
    hps = write_hps(tmp_path, num_training_samples="4", multi_label="1")
    args = [*manifest_args(train, validation, hps, "source-ref,labels")]
    assert run([*args, "--label-format", "class-id", "--dataset", "gt"], session) == 0
    (request,) = recorder.params("CreateTrainingJob")
    assert {c["ContentType"] for c in request["InputDataConfig"]} == {
        "application/x-recordio; label-format=class-id"
    }


def test_multi_hot_labels_as_lists_or_json_text(
    session, recorder, bucket, pushed_image, tmp_path
) -> None:
    train = write_manifest(tmp_path / "t.manifest", ["[1, 0, 1]", [0, 1, 0], "[0,0,1]"])
    validation = write_manifest(tmp_path / "v.manifest", [[1, 1, 0]])
    hps = write_hps(tmp_path, num_training_samples="3", multi_label="1")
    assert run([*manifest_args(train, validation, hps), "--dataset", "gt"], session) == 0
    (request,) = recorder.params("CreateTrainingJob")
    assert {c["ContentType"] for c in request["InputDataConfig"]} == {"application/x-recordio"}


@pytest.mark.parametrize(
    ("names", "labels", "multi_label", "message"),
    [
        ("class,source-ref", [0] * 6, "0", "the first name must be the image attribute"),
        ("source-ref,category", [0] * 6, "0", "line 1: no 'category' attribute (it has: source"),
        ("source-ref", [0] * 6, "0", "exactly two attributes, the image then its label"),
        ("source-ref,class", [0, 1, 2, 3, 0, 1], "0", "line 4: label 3 is outside 0..2"),
        ("source-ref,class", [0, "cat", 1, 1, 1, 1], "0", "line 2: label 'cat' is not a class"),
        ("source-ref,class", [[1, 0, 1]] * 6, "0", "is not a class index (set multi_label=1"),
        ("source-ref,class", [[1, 0]] * 6, "1", "multi-hot label has 2 entries, num_classes"),
    ],
)
def test_bad_manifests_and_attribute_names_fail_before_any_request(
    session, recorder, tmp_path, capsys, names, labels, multi_label, message
) -> None:
    train = write_manifest(tmp_path / "t.manifest", labels)
    validation = write_manifest(tmp_path / "v.manifest", [0, 1])
    hps = write_hps(tmp_path, num_training_samples="6", multi_label=multi_label)
    assert run(manifest_args(train, validation, hps, names), session) == 2
    assert message in capsys.readouterr().err
    assert recorder.calls == []


def test_label_format_needs_multi_label(session, recorder, manifests, tmp_path, capsys) -> None:
    args = manifest_args(*manifests, write_hps(tmp_path, num_training_samples="6"))
    assert run([*args, "--label-format", "class-id"], session) == 2
    assert "--label-format class-id is for multi-label manifests" in capsys.readouterr().err
    assert recorder.calls == []


def test_local_images_of_a_manifest_are_uploaded_and_the_manifest_points_at_them(
    session, recorder, bucket, pushed_image, tmp_path, setup_client
) -> None:
    """A manifest of paths relative to its folder (a local Ground Truth-like export)."""
    import random

    from tests.datagen import make_image, write_jpeg

    folder = tmp_path / "gt"
    rng = random.Random(1)
    for rel in ("cats/1.jpg", "dogs/2.jpg"):
        write_jpeg(folder / rel, make_image(0, rng))
    train = folder / "train.manifest"
    lines = [
        {"source-ref": "cats/1.jpg", "class": "0"},
        {"source-ref": "s3://elsewhere/3.jpg", "class": "1"},
        {"source-ref": "dogs/2.jpg", "class": 1},
    ]
    train.write_text("".join(json.dumps(line) + "\n" for line in lines))
    validation = write_manifest(folder / "validation.manifest", [0, 1])
    hps = write_hps(tmp_path, num_training_samples="3")
    assert run([*manifest_args(train, validation, hps), "--dataset", "gt"], session) == 0
    base = "oic/data/gt/train/"
    assert {p["Key"] for p in recorder.params("PutObject")} == {
        base + "train.manifest",
        base + "images/cats/1.jpg",
        base + "images/dogs/2.jpg",
        "oic/data/gt/validation/validation.manifest",
    }
    body = setup_client("s3").get_object(Bucket=BUCKET, Key=base + "train.manifest")["Body"]
    uploaded = [json.loads(line) for line in body.read().decode().splitlines()]
    assert [u["source-ref"] for u in uploaded] == [
        f"s3://{BUCKET}/{base}images/cats/1.jpg",
        "s3://elsewhere/3.jpg",
        f"s3://{BUCKET}/{base}images/dogs/2.jpg",
    ]
    assert [u["class"] for u in uploaded] == ["0", "1", 1]
    image = setup_client("s3").get_object(Bucket=BUCKET, Key=base + "images/dogs/2.jpg")["Body"]
    assert image.read() == (folder / "dogs" / "2.jpg").read_bytes()
    (request,) = recorder.params("CreateTrainingJob")
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://{BUCKET}/{base}train.manifest"
    )


@pytest.mark.parametrize("ref", ["cats/missing.jpg", "../outside.jpg", "/etc/hostname"])
def test_a_manifest_path_that_is_not_a_file_beside_it_is_refused(
    session, recorder, tmp_path, capsys, ref
) -> None:
    (tmp_path / "outside.jpg").write_bytes(b"\xff\xd8")
    folder = tmp_path / "gt"
    folder.mkdir()
    train = folder / "t.manifest"
    train.write_text(json.dumps({"source-ref": ref, "class": 0}) + "\n")
    validation = write_manifest(folder / "v.manifest", [0])
    hps = write_hps(tmp_path, num_training_samples="1")
    assert run(manifest_args(train, validation, hps), session) == 2
    err = capsys.readouterr().err
    assert f"source-ref {ref!r} is neither an S3 URI nor an image file under" in err
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("--input-mode", "read in Pipe mode only"),
        ("--validation-manifest", "pass --validation-manifest FILE too"),
        ("--attribute-names", "pass --attribute-names IMAGE,LABEL"),
    ],
)
def test_manifest_options_that_do_not_go_together(
    session, recorder, manifests, tmp_path, capsys, drop, message
) -> None:
    args = manifest_args(*manifests, write_hps(tmp_path, num_training_samples="6"))
    del args[args.index(drop) : args.index(drop) + 2]
    assert run(args, session) == 2
    assert message in capsys.readouterr().err
    assert recorder.calls == []


def test_manifest_dry_run_prints_the_request_and_sends_nothing(
    session, recorder, manifests, tmp_path, capsys
) -> None:
    hps = write_hps(tmp_path, num_training_samples="6")
    args = [*manifest_args(*manifests, hps), "--dry-run", "--dataset", "gt"]
    assert run(args, session) == 0
    out = capsys.readouterr().out
    request = json.loads(out[out.index("CreateTrainingJob ") + len("CreateTrainingJob ") :])
    assert request["InputDataConfig"][1]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://{BUCKET}/oic/data/gt/validation/validation.manifest"
    )
    assert "would upload 1 files" in out
    assert recorder.calls == []
