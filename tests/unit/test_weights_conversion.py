"""torchvision weights, converted without torch, give torchvision's outputs in the product's
MXNet network. Expected logits come from torchvision itself (tests/fixtures/
make_torchvision_expected.py, run once in a venv with torch)."""

from __future__ import annotations

from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.fixtures.seeded_resnet import LOGITS_KEPT, expected, fixed_input, seeded_state
from train import model
from train.weights import convert, readers, store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = expected()
TOLERANCE = 1e-4


def _mxnet_logits(params: Path, gluon_name: str) -> np.ndarray:
    depth, variant = gluon_name.removeprefix("resnet").split("_")
    net = model.build_backbone(int(depth), classes=1000, variant=variant)
    net.load_parameters(str(params))  # every parameter present, nothing extra
    return net(mx.nd.array(fixed_input())).asnumpy()[:, :LOGITS_KEPT]


@pytest.mark.parametrize("depth", ["18", "50"])
def test_seeded_safetensors_give_torchvisions_logits(tmp_path: Path, depth: str):
    case = EXPECTED["seeded"][depth]
    state = seeded_state(case["manifest"], case["seed"])
    source = tmp_path / "model.safetensors"
    save_file(state, str(source))
    params, name = store.convert_file(source, int(depth), tmp_path / "out")
    assert name == {"18": "resnet18_v1", "50": "resnet50_v1b"}[depth]
    diff = np.abs(_mxnet_logits(params, name) - np.array(case["logits"])).max()
    assert diff < TOLERANCE, f"max abs diff {diff}"


def test_a_real_torch_save_file_gives_torchvisions_logits(tmp_path: Path):
    params, name = store.convert_file(FIXTURES / "resnet18_strided.pth", 18, tmp_path)
    expected = np.array(EXPECTED["strided_pth"]["logits"])
    diff = np.abs(_mxnet_logits(params, name) - expected).max()
    assert diff < TOLERANCE, f"max abs diff {diff}"


def test_the_pth_reader_keeps_dtypes_and_counters():
    state = readers.read_pth(FIXTURES / "resnet18_strided.pth")
    assert state["bn1.weight"].dtype == np.float16
    assert state["conv1.weight"].dtype == np.float32
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["bn1.num_batches_tracked"] == 3


def test_the_pth_reader_refuses_arbitrary_globals(tmp_path: Path):
    import pickle
    import zipfile

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}))
    with pytest.raises(readers.UnreadableWeights, match="builtins.print"):
        readers.read_pth(bad)


def test_a_state_dict_of_another_network_is_refused(tmp_path: Path):
    source = tmp_path / "other.safetensors"
    save_file(
        {"fc.weight": np.zeros((2, 2), np.float32), "layer1.0.attn.qkv": np.zeros(1)}, str(source)
    )
    with pytest.raises(convert.ConversionError, match="layer1.0.attn.qkv"):
        store.convert_file(source, 18, tmp_path)


@pytest.mark.parametrize(("depth", "variant"), [(50, "v1"), (50, "v1b"), (18, "v1")])
def test_gluoncv_params_tell_their_variant(tmp_path: Path, depth: int, variant: str):
    net = model.build_backbone(depth, classes=1000, variant=variant)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.save_parameters(str(tmp_path / "user.params"))
    params, name = store.convert_file(tmp_path / "user.params", depth, tmp_path / "out")
    assert name == f"resnet{depth}_{variant}"


def test_a_file_of_another_depth_is_refused_and_nothing_is_written(tmp_path: Path):
    with pytest.raises(readers.UnreadableWeights, match="Is ResNet-50 the depth of"):
        store.convert_file(FIXTURES / "resnet18_strided.pth", 50, tmp_path)
    assert list(tmp_path.iterdir()) == []
