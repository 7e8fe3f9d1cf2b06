"""An MXNet symbol graph (symbol JSON + ``.params``) as a trainable ``torch.nn.Module``.

MXNet stays the authority on what the network is: the job's MXNet side builds and exports it,
and :class:`SymbolNet` runs that graph operator by operator (:mod:`.ops`), so a wrong guess
about the architecture cannot happen. Trainable inputs become Parameters (``arg``), BatchNorm
moving statistics buffers (``aux``), and the gammas of ``fix_gamma`` BatchNorms frozen buffers
(``fixed``): MXNet uses 1 for them and their stored values are written back untouched.
:meth:`SymbolNet.mxnet_params` gives the parameters back under their MXNet names and dtypes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from train.engines.torch import ops
from train.engines.torch.ops import UnsupportedGraph
from train.formats import params_io

INPUT = "data"
_PREFIXES = ("arg:", "aux:")
_MULTI_OUTPUT = {
    "SliceChannel": "num_outputs",
    "split": "num_outputs",
    "amp_multicast": "num_outputs",
}
# Inputs an operator needs at least (a pre-0.9 graph lists no BatchNorm moving statistics).
_MIN_INPUTS = {"BatchNorm": 5, "Convolution": 2, "FullyConnected": 2}


def _attrs(node: dict[str, Any]) -> dict[str, str]:
    """A node's attributes, whichever key its MXNet version stored them under."""
    return {**node.get("param", {}), **node.get("attr", {}), **node.get("attrs", {})}


def _key(name: str) -> str:
    return name.replace(".", "__")  # torch's module attribute names cannot hold dots


class _Buffers(nn.Module):
    """Named tensors that move with the module and are saved in its state_dict."""


class SymbolNet(nn.Module):
    """The graph's scores (the input of its output operator) as a function of raw ``data``.

    Attributes:
        output_op: the graph's final operator when it turns scores into outputs (``softmax``,
            ``SoftmaxOutput``, ``sigmoid`` for a final sigmoid Activation too,
            ``LogisticRegressionOutput``, ...); ``""`` when the graph ends in scores.
    """

    def __init__(self, graph: Mapping[str, Any], params: Mapping[str, np.ndarray]):
        super().__init__()
        nodes, heads = graph.get("nodes"), graph.get("heads")
        if not isinstance(nodes, list) or not isinstance(heads, list) or len(heads) != 1:
            raise UnsupportedGraph("the symbol JSON must hold 'nodes' and exactly one head")
        self._names = [n["name"] for n in nodes]
        head = nodes[heads[0][0]]
        head_attrs = _attrs(head)
        self.output_op, scores = "", (heads[0][0], heads[0][1])
        if head["op"] in ops.OUTPUT_OPS or (
            head["op"] == "Activation" and head_attrs.get("act_type") == "sigmoid"
        ):
            self.output_op = "sigmoid" if head["op"] == "Activation" else head["op"]
            scores = (head["inputs"][0][0], head["inputs"][0][1])
            self._output_fn = ops.build(head["op"], head["name"], head_attrs)
        needed = self._needed(nodes, scores[0])
        self._stored = {k.split(":", 1)[1] if k.startswith(_PREFIXES) else k: k for k in params}
        self._dtypes = {name: np.asarray(params[k]).dtype for name, k in self._stored.items()}
        self.arg, self.aux, self.fixed = nn.ParameterDict(), _Buffers(), _Buffers()
        self._sources: list[tuple[int, nn.Module, str]] = []
        slots: dict[tuple[int, int], int] = {}
        outputs: dict[int, tuple[int, ...]] = {}
        roles = self._roles(nodes, needed)
        for i in needed:
            node = nodes[i]
            if node["op"] != "null":
                count = int(_attrs(node).get(_MULTI_OUTPUT.get(node["op"], ""), 1))
                outputs[i] = tuple(range(len(slots), len(slots) + count))
                slots.update({(i, k): slot for k, slot in enumerate(outputs[i])})
                continue
            slots[(i, 0)] = len(slots)
            name = node["name"]
            if name == INPUT:
                self._input_slot = slots[(i, 0)]
            elif name in self._stored:
                value = self._tensor(node, np.asarray(params[self._stored[name]]))
                self._register(roles.get(name, "arg"), name, value, slots[(i, 0)])
            elif roles.get(name) != "label":
                raise UnsupportedGraph(f"the params lack {name!r}, an input of the graph")
        if not hasattr(self, "_input_slot"):
            raise UnsupportedGraph(f"the graph has no input variable named {INPUT!r}")
        self._extra = {n: params[k] for n, k in self._stored.items() if n not in self._live()}
        self._slot_count, self._scores_slot = len(slots), slots[scores]
        self._steps = self._plan(nodes, needed, slots, outputs)

    @classmethod
    def from_files(cls, symbol_path: Path | str, params_path: Path | str) -> SymbolNet:
        """The network of an MXNet ``*-symbol.json`` and ``*.params`` pair.

        Raises:
            UnsupportedGraph: the symbol file is not MXNet symbol JSON, or the graph cannot
                run here (the message names the node).
            params_io.BadParamsFile: the params file is unreadable.
        """
        try:
            graph = json.loads(Path(symbol_path).read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UnsupportedGraph(f"{symbol_path} is not MXNet symbol JSON: {exc}") from None
        return cls(graph, params_io.load(params_path))

    @staticmethod
    def _needed(nodes: list[dict[str, Any]], last: int) -> list[int]:
        """The nodes the scores depend on, in order (MXNet writes inputs before their users)."""
        seen, stack = {last}, [last]
        while stack:
            i = stack.pop()
            for source, *_ in nodes[i]["inputs"]:
                if source >= i:
                    raise UnsupportedGraph(f"node {nodes[i]['name']!r}: inputs out of order")
                if source not in seen:
                    seen.add(source)
                    stack.append(source)
        return sorted(seen)

    @staticmethod
    def _roles(nodes: list[dict[str, Any]], needed: list[int]) -> dict[str, str]:
        """Variables that are not plain trainable ``arg``: ``aux`` (BatchNorm moving
        statistics), ``fixed`` (gammas of fix_gamma BatchNorms only), ``label``."""
        roles: dict[str, str] = {}
        trained: set[str] = set()
        for i in needed:
            node, attrs = nodes[i], _attrs(nodes[i])
            fix_gamma = attrs.get("fix_gamma", "True").lower() in ("true", "1")
            for position, (source, *_) in enumerate(node["inputs"]):
                name = nodes[source]["name"]
                if node["op"] == "BatchNorm" and position in (3, 4):
                    roles[name] = "aux"
                elif node["op"] == "BatchNorm" and position == 1 and fix_gamma:
                    roles.setdefault(name, "fixed")
                elif node["op"] in ops.LOSS_HEADS and position > 0:
                    roles.setdefault(name, "label")
                elif nodes[source]["op"] == "null":
                    trained.add(name)
        return {n: r for n, r in roles.items() if not (r == "fixed" and n in trained)}

    def _tensor(self, node: dict[str, Any], value: np.ndarray) -> torch.Tensor:
        declared = _attrs(node).get("__shape__")
        if declared:
            dims = [int(d) for d in declared.strip("()[] ").replace(",", " ").split()]
            if len(dims) != value.ndim or any(
                d not in (0, s) for d, s in zip(dims, value.shape, strict=True)
            ):
                raise UnsupportedGraph(
                    f"the params hold {node['name']!r} with shape {value.shape}; the graph "
                    f"declares {declared}"
                )
        return torch.from_numpy(np.array(value, dtype=np.float32))

    def _register(self, role: str, name: str, value: torch.Tensor, slot: int) -> None:
        if role == "arg":
            self.arg[_key(name)] = nn.Parameter(value)
            self._sources.append((slot, self.arg, _key(name)))
        else:
            holder = self.aux if role == "aux" else self.fixed
            holder.register_buffer(_key(name), value)
            self._sources.append((slot, holder._buffers, _key(name)))

    def _plan(self, nodes, needed, slots, outputs) -> list[tuple]:
        """The operator nodes as ``(fn, input slots, output slots, node index)``."""
        steps = []
        for i in needed:
            node = nodes[i]
            if node["op"] == "null":
                continue
            if len(node["inputs"]) < _MIN_INPUTS.get(node["op"], 0):
                raise UnsupportedGraph(
                    f"node {node['name']!r} ({node['op']}) has {len(node['inputs'])} inputs; a "
                    "graph saved before MXNet 0.9 lacks some: load and save it with MXNet 1.x"
                )
            fn = ops.build(node["op"], node["name"], _attrs(node))
            inputs = tuple(slots[(s, k)] for s, k, *_ in node["inputs"])
            out = outputs[i]
            steps.append((fn, inputs, out if len(out) > 1 else out[0], i))
        return steps

    def _live(self) -> dict[str, torch.Tensor]:
        """Every graph parameter's current tensor, by MXNet name."""
        by_key = {**self.arg, **self.aux._buffers, **self.fixed._buffers}
        return {name: by_key[_key(name)] for name in self._stored if _key(name) in by_key}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels ``N x C x H x W`` (any dtype; 0-255) to float32 scores."""
        if not x.is_floating_point():
            x = x.float()
        values: list[Any] = [None] * self._slot_count
        values[self._input_slot] = x
        for slot, holder, key in self._sources:
            values[slot] = holder[key]
        training = self.training
        for fn, inputs, outputs, index in self._steps:
            try:
                result = fn(training, *[values[s] for s in inputs])
            except Exception as exc:
                shapes = [tuple(values[s].shape) for s in inputs if values[s] is not None]
                exc.add_note(f"in MXNet graph node {self._names[index]!r}, input shapes {shapes}")
                raise
            if isinstance(outputs, int):
                values[outputs] = result
            else:
                for slot, value in zip(outputs, result, strict=True):
                    values[slot] = value
        return values[self._scores_slot].float()

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """What the graph outputs (MXNet's forward result) for ``scores``: its output op."""
        return self._output_fn(False, scores) if self.output_op else scores

    @property
    def independent_scores(self) -> bool:
        """Whether the output is a per-class sigmoid (multi-label) rather than a softmax."""
        return self.output_op in ("sigmoid", "LogisticRegressionOutput")

    def mxnet_params(self) -> dict[str, np.ndarray]:
        """The parameters as MXNet saves them: the input's keys and order, ``arg:``/``aux:``
        prefixes added by role where the input had none, each in the dtype it came in."""
        live, out = self._live(), {}
        for name, key in self._stored.items():
            if not key.startswith(_PREFIXES):
                key = ("aux:" if self._is_aux(name) else "arg:") + name
            tensor = live.get(name)
            value = self._extra[name] if tensor is None else tensor.detach().cpu().numpy()
            out[key] = np.array(value, dtype=self._dtypes[name])
        return out

    @torch.no_grad()
    def load_mxnet_params(self, params: Mapping[str, np.ndarray]) -> None:
        """Copy saved values (``arg:``/``aux:`` keys or bare names) into this network, as
        :meth:`mxnet_params` wrote them (a checkpoint).

        Raises:
            UnsupportedGraph: a parameter of the graph is missing or has another shape.
        """
        bare = {k.split(":", 1)[1] if k.startswith(_PREFIXES) else k: v for k, v in params.items()}
        for name, tensor in self._live().items():
            if name not in bare:
                raise UnsupportedGraph(f"the saved parameters lack {name!r}")
            value = torch.from_numpy(np.asarray(bare[name], dtype=np.float32))
            if tuple(value.shape) != tuple(tensor.shape):
                raise UnsupportedGraph(
                    f"saved {name!r} has shape {tuple(value.shape)}, the graph "
                    f"{tuple(tensor.shape)}"
                )
            tensor.copy_(value)

    def _is_aux(self, name: str) -> bool:
        return _key(name) in self.aux._buffers
