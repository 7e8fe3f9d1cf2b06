"""Augmented manifests (Ground Truth output): the built-in's rules, checked before any upload.

A manifest is JSON Lines, one image per line: the image attribute (``source-ref``, an S3 URI)
and a label attribute named after the labelling job. In Pipe mode SageMaker streams, for every
line, one record per name of ``AttributeNames`` in that order, so the built-in needs exactly two:
the image attribute, then the label attribute. A wrong or missing name is the built-in's "Got
empty batch from pipe" hours later; here it is an error naming the line and the keys it has.

Labels: single-label ``"3"``, ``3`` or ``3.0``; multi-label (``multi_label=1``) a JSON array,
multi-hot ``[1, 0, 1]`` by default or class ids ``[0, 2]`` with ``label-format=class-id``.
Images are S3 URIs, or paths relative to the manifest's folder (a local export): those are
uploaded and the manifest that goes up names their S3 URIs instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.errors import CliError
from train import json_input

MULTI_HOT, CLASS_ID = "multi-hot", "class-id"
LABEL_FORMATS = (MULTI_HOT, CLASS_ID)
MAX_SHOWN = 5  # problems listed in one error


@dataclass(frozen=True)
class LabelRules:
    """What a label must look like: from the hyperparameters and ``--label-format``."""

    multi_label: bool = False
    num_classes: int | None = None
    label_format: str = MULTI_HOT


def parse_attribute_names(text: str) -> tuple[str, str]:
    """``source-ref,class`` to ``('source-ref', 'class')``: the image, then the label attribute.

    Raises:
        CliError: not two distinct names, or the image attribute does not end in ``-ref``.
    """
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if len(names) != 2 or names[0] == names[1]:
        raise CliError(
            f"--attribute-names {text!r}: the built-in reads exactly two attributes, the image "
            "then its label, e.g. --attribute-names source-ref,class"
        )
    image, label = names
    if not image.endswith("-ref"):
        raise CliError(
            f"--attribute-names {text!r}: the first name must be the image attribute, whose name "
            f"ends in -ref (SageMaker then streams the object it points to), e.g. "
            f"--attribute-names source-ref,{label}"
        )
    if label.endswith("-ref"):
        raise CliError(
            f"--attribute-names {text!r}: the second name must be the label attribute, not "
            f"another -ref attribute (the order is image, then label)"
        )
    return image, label


def _number(value: Any) -> int | None:
    """An integer label from ``3``, ``3.0``, ``"3"`` or ``"3.0"``; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().strip('"'))
        except ValueError:
            return None
    if isinstance(value, int | float) and float(value).is_integer():
        return int(value)
    return None


def _label_problem(value: Any, rules: LabelRules) -> str | None:
    """Why ``value`` is not a label under ``rules``, or None."""
    n = rules.num_classes
    if not rules.multi_label:
        label = _number(value)
        if label is None:
            return f"label {value!r} is not a class index (set multi_label=1 for lists)"
        if label < 0 or (n is not None and label >= n):
            return f"label {label} is outside 0..{(n or 1) - 1} (num_classes={n})"
        return None
    if isinstance(value, str):
        try:
            value = json_input.loads(value)
        except json.JSONDecodeError:
            return f"multi-label value {value!r} is not a JSON array"
    if not isinstance(value, list) or any(_number(v) is None for v in value):
        return f"multi-label value {value!r} is not a JSON array of integers"
    ints = [_number(v) for v in value]
    if rules.label_format == CLASS_ID:
        bad = [i for i in ints if i < 0 or (n is not None and i >= n)]
        return f"class ids {bad} are outside 0..{(n or 1) - 1}" if bad else None
    if n is not None and len(ints) != n:
        return (
            f"multi-hot label has {len(ints)} entries, num_classes is {n} (for class ids "
            "like [0, 2] pass --label-format class-id)"
        )
    return None if set(ints) <= {0, 1} else f"multi-hot label {value!r} holds values other than 0/1"


def local_image(value: Any, folder: Path) -> str | None:
    """The path of ``value`` relative to ``folder`` when it names a file inside it, else None."""
    if not isinstance(value, str) or "://" in value or not value.strip():
        return None
    path = (folder / value).resolve()
    try:
        relative = path.relative_to(folder.resolve())
    except ValueError:
        return None
    return relative.as_posix() if path.is_file() else None


def _image_problem(value: Any, name: str, folder: Path) -> str | None:
    if isinstance(value, str) and value.startswith("s3://") and "/" in value[5:]:
        return None
    if local_image(value, folder) is not None:
        return None
    return (
        f"{name} {value!r} is neither an S3 URI nor an image file under {folder} (paths are "
        "relative to the manifest's folder; those images are uploaded beside the manifest)"
    )


def _line_problem(
    line: str, attributes: tuple[str, str], rules: LabelRules, folder: Path
) -> str | None:
    image, label = attributes
    try:
        record = json_input.loads(line)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg})" if line.strip() else "empty line"
    if not isinstance(record, dict):
        return "not a JSON object"
    missing = [a for a in (image, label) if a not in record]
    if missing:
        return (
            f"no {' or '.join(repr(m) for m in missing)} attribute (it has: "
            f"{', '.join(record)}); --attribute-names must name the image attribute, then the "
            "label attribute"
        )
    return _image_problem(record[image], image, folder) or _label_problem(record[label], rules)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise CliError(f"manifest {path} not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CliError(
            f"manifest {path} is not UTF-8 text ({exc.reason} at byte {exc.start}): it needs "
            "one JSON line per image"
        ) from None
    if lines and not lines[-1].strip():
        lines.pop()  # a trailing newline or blank last line
    if not lines:
        raise CliError(f"manifest {path} is empty: it needs one JSON line per image")
    return lines


def check_manifest(path: Path, attributes: tuple[str, str], rules: LabelRules) -> int:
    """Check every line of the manifest ``path``; return its number of lines (images).

    Raises:
        CliError: the file is missing or empty, or lines are bad (the first few are listed).
    """
    lines = _lines(path)
    problems = []
    for number, line in enumerate(lines, start=1):
        problem = _line_problem(line, attributes, rules, path.parent)
        if problem:
            problems.append(f"line {number}: {problem}")
    if problems:
        shown = "\n  ".join(problems[:MAX_SHOWN])
        more = f"\n  ... and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        raise CliError(
            f"manifest {path} has {len(problems)} bad line(s) of {len(lines)}:\n  {shown}{more}\n"
            "Fix the manifest; nothing was uploaded or started."
        )
    return len(lines)


def with_uploaded_images(path: Path, image: str, uri_prefix: str) -> tuple[bytes, list[str]]:
    """The checked manifest with each local image path replaced by ``uri_prefix`` + the path,
    and those paths (in order, once each). Lines that name S3 URIs are kept as they are."""
    out, local = [], {}
    for line in _lines(path):
        record = json_input.loads(line)
        relative = local_image(record[image], path.parent)
        if relative is None:
            out.append(line)
            continue
        local.setdefault(relative, None)
        out.append(json.dumps({**record, image: uri_prefix + relative}))
    return ("\n".join(out) + "\n").encode(), list(local)
