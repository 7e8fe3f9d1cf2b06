"""MXNet side. Class activation maps (Zhou et al., 2016) from the SAVED model files, so they
are the same for every engine that writes the built-in's model layout: the feature map that
feeds the global pooling, weighted by the classifier's row of the class,
``CAM_c = sum_k w_ck F_k``, rectified, upsampled to the input and scaled to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_PASS_THROUGH = frozenset({"Flatten", "flatten", "Reshape", "reshape", "Dropout"})


def _feature_output(graph: list[dict], fc_name: str) -> str:
    """The name of the internal output the global pooling before the classifier reads."""
    node = next(n for n in graph if n["name"] == fc_name)
    index = node["inputs"][0][0]
    while graph[index]["op"] in _PASS_THROUGH:
        index = graph[index]["inputs"][0][0]
    pool = graph[index]
    attrs = pool.get("attrs") or {}
    if pool["op"] != "Pooling" or str(attrs.get("global_pool", "False")).lower() not in (
        "true",
        "1",
    ):
        raise ValueError("the classifier does not follow a global pooling: no CAM for this model")
    return graph[pool["inputs"][0][0]]["name"] + "_output"


class ActivationMaps:
    """A saved model (this product's layout) that gives probabilities and CAMs for a batch."""

    def __init__(self, model_dir: Path):
        import mxnet as mx
        from mxnet import gluon

        from train.formats import model_dir as saved_models
        from train.formats import symbolic

        saved = saved_models.open_model(model_dir)
        symbol, params = saved_models.inference_graph(saved)
        symbol = symbolic.without_loss_head(symbol)
        graph = symbolic.nodes(symbol)
        fc_name, head = symbolic.classifier_layer(symbol)
        features = symbol.get_internals()[_feature_output(graph, fc_name)]
        self._weights = params[head[0]].asnumpy()  # (classes, channels)
        self.image_shape = saved.files.image_shape
        self._block = gluon.SymbolBlock(mx.sym.Group([features, symbol]), mx.sym.var("data"))
        for name, param in self._block.collect_params().items():
            param._load_init(params[name], mx.cpu())
        self._mx = mx

    def __call__(self, batch: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``(N, K)`` and the maps ``(N, H, W)`` in [0, 1] of ``classes[n]``
        for a raw-pixel ``(N, C, H, W)`` batch."""
        fmap, probs = self._block(self._mx.nd.array(batch, dtype="float32"))
        fmap, probs = fmap.asnumpy(), probs.asnumpy()
        weights = self._weights[np.asarray(classes, dtype=np.int64)]  # (N, C)
        cams = np.maximum(np.einsum("nc,nchw->nhw", weights, fmap), 0)
        height, width = batch.shape[2:]
        out = np.zeros((len(batch), height, width), np.float32)
        for n, cam in enumerate(cams):
            up = cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
            out[n] = up / up.max() if up.max() > 0 else up
        return probs, out


def overlay(image_rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with the map laid over it in the 'jet' colours (red = where it looks)."""
    heat = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    return (image_rgb * (1 - alpha) + heat * alpha).astype(np.uint8)
