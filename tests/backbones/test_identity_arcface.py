"""ArcFace: a tiny IResNet ONNX built here (insightface layer types and names); our torch graph vs onnxruntime
and vs insightface's own model-zoo path (skipped without the insightface extra)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import skimage.data
import torch

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from backbones.identity.arcface import (  # noqa: E402
    ArcFaceIdentity,
    InsightFaceRecognizer,
    load_arcface_onnx,
    resolve_model_path,
)
from common.errors import UserError  # noqa: E402


def _tiny_iresnet(
    path, input_size: int = 112, channels: int = 8, features: int = 16, seed: int = 0, raw_pixels: bool = False
) -> None:
    """IResNet with one IBasicBlock (stride 2, conv1x1+BN downsample), as insightface's arcface_torch
    exports it: conv1-bn1-prelu, layer1.0.{bn1,conv1,bn2,prelu,conv2,bn3,downsample.0/1}, bn2,
    Flatten, fc (Gemm), features (BatchNormalization). With `raw_pixels`, as an MXNet export: the graph
    takes pixels in [0, 255] and starts with nodes named _minus0 and _mul0 that normalise them."""
    rng = np.random.default_rng(seed)
    initialisers, nodes = [], []
    image = "data" if raw_pixels else "input.1"
    if raw_pixels:
        initialisers += [
            numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
            numpy_helper.from_array(np.array(1 / 128, np.float32), "scale"),
        ]
        nodes += [
            helper.make_node("Sub", ["data", "mean"], ["centred"], name="_minus0"),
            helper.make_node("Mul", ["centred", "scale"], ["input.1"], name="_mul0"),
        ]

    def tensor(name, shape, low=-0.3, high=0.3):
        initialisers.append(numpy_helper.from_array(rng.uniform(low, high, shape).astype(np.float32), name))
        return name

    def batch_norm(prefix, x, out, count):
        names = [
            tensor(f"{prefix}.weight", (count,), 0.5, 1.5),
            tensor(f"{prefix}.bias", (count,)),
            tensor(f"{prefix}.running_mean", (count,)),
            tensor(f"{prefix}.running_var", (count,), 0.5, 2.0),
        ]
        nodes.append(helper.make_node("BatchNormalization", [x, *names], [out], epsilon=1e-5))
        return out

    def conv(prefix, x, out, c_in, c_out, kernel, stride):
        weight = tensor(f"{prefix}.weight", (c_out, c_in, kernel, kernel))
        pad = kernel // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, weight],
                [out],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad] * 4,
                dilations=[1, 1],
                group=1,
            )
        )
        return out

    def prelu(prefix, x, out, count):
        nodes.append(helper.make_node("PRelu", [x, tensor(f"{prefix}.weight", (count, 1, 1), 0.0, 0.5)], [out]))
        return out

    x = conv("conv1", "input.1", "t1", 3, channels, 3, 1)
    x = prelu("prelu", batch_norm("bn1", x, "t2", channels), "t3", channels)
    block = batch_norm("layer1.0.bn1", x, "t4", channels)
    block = conv("layer1.0.conv1", block, "t5", channels, channels, 3, 1)
    block = prelu("layer1.0.prelu", batch_norm("layer1.0.bn2", block, "t6", channels), "t7", channels)
    block = batch_norm("layer1.0.bn3", conv("layer1.0.conv2", block, "t8", channels, channels, 3, 2), "t9", channels)
    shortcut = batch_norm(
        "layer1.0.downsample.1", conv("layer1.0.downsample.0", x, "t10", channels, channels, 1, 2), "t11", channels
    )
    nodes.append(helper.make_node("Add", [block, shortcut], ["t12"]))
    x = batch_norm("bn2", "t12", "t13", channels)
    nodes.append(helper.make_node("Flatten", [x], ["t14"], axis=1))
    side = input_size // 2
    fc_weight = tensor("fc.weight", (features, channels * side * side), -0.01, 0.01)
    nodes.append(
        helper.make_node(
            "Gemm", ["t14", fc_weight, tensor("fc.bias", (features,))], ["t15"], alpha=1.0, beta=1.0, transB=1
        )
    )
    batch_norm("features", "t15", "683", features)
    graph = helper.make_graph(
        nodes,
        "tiny_iresnet",
        [helper.make_tensor_value_info(image, TensorProto.FLOAT, ["None", 3, input_size, input_size])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", features])],
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("insightface") / "models" / "tiny" / "w600k_r50.onnx"
    path.parent.mkdir(parents=True)
    _tiny_iresnet(path)
    return path


def test_matches_onnxruntime(tiny_model):
    module = load_arcface_onnx(tiny_model)
    inputs = np.random.default_rng(1).uniform(-1, 1, (3, 3, 112, 112)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input.1": inputs})[0]
    ours = module(torch.from_numpy(inputs)).numpy()
    print(f"tiny IResNet torch vs onnxruntime: max abs diff {np.abs(ours - expected).max():.2e}")
    assert ours.shape == (3, 16) and np.abs(expected).max() > 0.1
    assert np.allclose(ours, expected, atol=1e-4, rtol=1e-4)
    assert torch.allclose(module(torch.from_numpy(inputs[1:2])), torch.from_numpy(ours[1:2]), atol=1e-5)


def test_identity_network_embeds_with_gradient(tiny_model):
    network = ArcFaceIdentity(model_name="tiny", root=tiny_model.parent.parent, on_missing="centre")
    assert network.embedding_dim == 16 and not network.training
    images = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)  # noise: no face -> centred crop
    embeddings = network.embed(images)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-5)
    network.distance(embeddings, embeddings.detach().flip(0)).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_missing_model_names_file_and_folder(tmp_path):
    with pytest.raises(UserError, match=r"w600k_r50\.onnx.*buffalo_l"):
        resolve_model_path(root=tmp_path)


def test_wrong_input_size(tmp_path):
    path = tmp_path / "small.onnx"
    _tiny_iresnet(path, input_size=64)
    with pytest.raises(ValueError, match="112"):
        load_arcface_onnx(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "w600k_r50.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(UserError, match="cannot read"):
        load_arcface_onnx(path)


def test_no_face_raises_by_default(tiny_model):
    network = ArcFaceIdentity(model_path=tiny_model)
    with pytest.raises(ValueError, match=r"no face found in batch item\(s\) \[0, 1\]"):
        network.embed(torch.zeros(2, 3, 64, 64))


@pytest.fixture(scope="module")
def insightface():
    try:  # an ImportError, not only ModuleNotFoundError: opencv-python fails to import without libGL
        import insightface.model_zoo
    except ImportError as error:
        pytest.skip(f"the insightface extra is not usable here ({error}); pip install '.[insightface]'")
    return insightface.model_zoo


@pytest.fixture(scope="module", params=[False, True], ids=["normalised-input", "raw-pixels"])
def insightface_pair(request, tmp_path_factory, insightface):
    """(ArcFaceIdentity with evaluation_backend=insightface, its InsightFaceRecognizer) on a tiny model built here."""
    path = tmp_path_factory.mktemp("insightface") / "recognition.onnx"
    _tiny_iresnet(path, raw_pixels=request.param)
    network = ArcFaceIdentity(model_path=path, on_missing="centre", evaluation_backend="insightface")
    return network, network.insightface


def test_insightface_reads_the_built_file_as_arcface(insightface_pair):
    network, recognizer = insightface_pair
    assert type(recognizer.model).__name__ == "ArcFaceONNX" and recognizer.input_size == 112
    assert network.network.normalises_input == (recognizer.model.input_mean == 0.0)
    assert (recognizer.model.input_mean, recognizer.model.input_std) in ((0.0, 1.0), (127.5, 127.5))


def test_same_embedding_on_the_same_aligned_chips(insightface_pair):
    network, recognizer = insightface_pair
    chips = np.random.default_rng(3).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)  # RGB
    reference = torch.nn.functional.normalize(torch.from_numpy(recognizer.embed_chips(chips[..., ::-1].copy())), dim=1)
    ours = network.embed_chips(torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 127.5 - 1)
    print(f"aligned chips, torch vs insightface: max abs diff {(ours - reference).abs().max():.2e}")
    assert reference.shape == (3, 16) and (reference[0] - reference[1]).abs().max() > 0.1
    assert torch.allclose(ours, reference, atol=1e-5)


def test_same_embedding_through_both_alignments(insightface_pair):
    """The astronaut's face (chip scale below 2, so no pyramid level) and a faceless image (centred square)."""
    network, recognizer = insightface_pair
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    images = torch.cat([photo, torch.full_like(photo, 1 / 127.5 - 1)])  # uint8 values, so rounding changes nothing
    scale = network.chip_geometry(images)[:, :, :2].det().sqrt()
    assert scale[0] < 2
    points = network.alignment_points(images).numpy()
    frames = np.ascontiguousarray(((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()[..., ::-1])
    reference_chips = recognizer.align(frames, points)[..., ::-1].astype(np.float32)
    our_chips = ((network.chips(images) + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    ours = network.embed(images)
    with torch.no_grad():
        reference = network.embed(images)
    distance = network.distance(ours, reference)
    print(
        f"chips differ by at most {np.abs(our_chips - reference_chips).max():.2f} grey levels; "
        f"1 - cos between the paths {distance.tolist()}"
    )
    assert np.abs(our_chips - reference_chips).max() <= 0.51  # norm_crop rounds its chip to uint8
    assert distance.max() < 1e-4 and network.distance(ours[:1], ours[1:]) > 1e-2


def test_gradients_still_flow_with_the_insightface_backend(insightface_pair):
    network, _ = insightface_pair
    images = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_(True)
    network.embed(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_insightface_backend_bad_inputs(tiny_model, tmp_path, insightface):
    with pytest.raises(UserError, match="evaluation_backend 'onnx'; use one of torch, insightface"):
        ArcFaceIdentity(model_path=tiny_model, evaluation_backend="onnx")
    with pytest.raises(ValueError, match="evaluation_backend=insightface"):
        ArcFaceIdentity(model_path=tiny_model).insightface_embed(torch.zeros(1, 3, 64, 64))
    path = tmp_path / "small.onnx"
    _tiny_iresnet(path, input_size=64)
    with pytest.raises(UserError, match="not read .*small.onnx as a recognition model"):
        InsightFaceRecognizer(path)


def test_insightface_backend_without_the_package_names_the_extra(tiny_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "insightface.model_zoo", None)  # import fails as where the extra is absent
    with pytest.raises(UserError, match=r"needs the insightface package.*rankone-edit\[insightface\]"):
        ArcFaceIdentity(model_path=tiny_model, evaluation_backend="insightface")


def test_evaluate_config_selects_the_insightface_backend(tiny_model, insightface):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose(
            config_name="evaluate",
            overrides=[
                "identity=arcface",
                f"identity.model_path={tiny_model}",
                "identity.evaluation_backend=insightface",
            ],
        )
    network = instantiate(cfg.identity)
    assert isinstance(network, ArcFaceIdentity) and network.insightface is not None and network.on_missing == "centre"
