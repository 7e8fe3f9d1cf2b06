"""Which validation images to show with their activation maps, and the pictures themselves:
the most confident mistakes, and a few confident right answers per class where there is room."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from train import images, presets
from train.insight.packed import read_packed

MAX_MISTAKES = 12
MAX_RIGHT = 12


def pick(probs: np.ndarray, labels: np.ndarray) -> tuple[list[int], list[int]]:
    """Positions of the most confident mistakes, and of the most confident right answers,
    at most two per class, spread over as many classes as there is room for."""
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    wrong = [int(k) for k in order if predicted[k] != labels[k]][:MAX_MISTAKES]
    right: list[int] = []
    for rank in range(2):
        seen: dict[int, int] = {}
        for k in order:
            label = int(labels[k])
            if predicted[k] == label and len(right) < MAX_RIGHT:
                seen[label] = seen.get(label, 0) + 1
                if seen[label] == rank + 1 and int(k) not in right:
                    right.append(int(k))
    return wrong, right


def _crops(rec: Path, wanted: set[int], image_shape: tuple[int, int, int]) -> dict[int, Any]:
    """The centre crops ``ImageRecordIter`` fed the model, for the wanted record positions."""
    _, height, width = image_shape
    found = {}
    for position, (_, _, data) in enumerate(read_packed(rec)):
        if position in wanted:
            rgb = images.decode_image(data)
            found[position] = np.ascontiguousarray(presets.center_crop(rgb, height, width))
            if len(found) == len(wanted):
                break
    return found


def _png(rgb: np.ndarray, scale: int) -> str:
    import cv2

    big = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return base64.b64encode(images.encode_png(big)).decode()


def tiles(
    model_dir: Path, rec: Path, probs: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """MXNet side. ``{"mistakes": [...], "right": [...]}``, each tile the image and its map
    for the predicted class (base64 PNGs) with true and predicted class and confidence."""
    from train.insight.cam import ActivationMaps, overlay

    maps = ActivationMaps(model_dir)
    wrong, right = pick(probs, labels)
    crops = _crops(rec, set(wrong + right), maps.image_shape)
    out: dict[str, list[dict[str, Any]]] = {"mistakes": [], "right": []}
    for key, chosen in (("mistakes", wrong), ("right", right)):
        chosen = [k for k in chosen if k in crops]
        if not chosen:
            continue
        batch = np.stack([crops[k].transpose(2, 0, 1) for k in chosen]).astype(np.float32)
        if maps.image_shape[0] == 1:
            batch = batch.mean(axis=1, keepdims=True)
        predicted = probs[chosen].argmax(axis=1)
        _, cams = maps(batch, predicted)
        scale = max(1, 128 // crops[chosen[0]].shape[0])
        for k, pred, cam in zip(chosen, predicted, cams, strict=True):
            out[key].append(
                {
                    "record": k,
                    "true": class_names[int(labels[k])],
                    "predicted": class_names[int(pred)],
                    "confidence": float(probs[k].max()),
                    "image": _png(crops[k], scale),
                    "heatmap": _png(overlay(crops[k], cam), scale),
                }
            )
    return out
