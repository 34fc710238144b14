"""IdentityNetwork behaviour: dlib end to end on real faces, gradients, missing faces, identity=none."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

dlib = pytest.importorskip("dlib")

from backbones.identity.alignment import models_dir  # noqa: E402
from backbones.identity.base import cosine_distance  # noqa: E402
from backbones.identity.dlib_identity import DlibIdentity  # noqa: E402
from backbones.identity.dlib_resnet import default_weights_path  # noqa: E402
from backbones.identity.none import NoIdentity  # noqa: E402


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> DlibIdentity:
    return DlibIdentity(cache_dir=tmp_path_factory.mktemp("cache"), upsample=0)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_embed_matches_dlib_on_the_full_image(network, astronaut):
    image = skimage.data.astronaut()
    box = dlib.get_frontal_face_detector()(image, 1)[0]
    shape = dlib.shape_predictor(str(models_dir() / "shape_predictor_5_face_landmarks.dat"))(image, box)
    expected = np.array(
        dlib.face_recognition_model_v1(str(default_weights_path())).compute_face_descriptor(image, shape)
    )
    ours = network.descriptors(astronaut)[0].double().numpy()
    # dlib rounds its chip to uint8, we keep it continuous: descriptors agree to chip rounding.
    assert np.abs(ours - expected).max() < 0.02
    embedding = network.embed(astronaut)
    assert embedding.shape == (1, 128) and torch.allclose(embedding.norm(dim=1), torch.ones(1), atol=1e-5)


def test_gradient_reaches_images_and_distance_behaves(network, astronaut):
    flipped = astronaut.flip(3)
    images = torch.cat([astronaut, flipped]).requires_grad_(True)
    embeddings = network.embed(images)
    reference = network.embed(torch.cat([astronaut, astronaut])).detach()
    distance = network.distance(embeddings, reference)
    assert distance[0].abs() < 1e-5 and 0 < distance[1] < 0.1  # a mirrored face is the same person
    distance.sum().backward()
    assert images.grad is not None and images.grad[1].abs().sum() > 0 and torch.isfinite(images.grad).all()
    assert not any(p.requires_grad for p in network.parameters())


def test_no_face_error_names_items_and_centre_fallback(network, astronaut):
    blank = torch.zeros(1, 3, 512, 512)
    with pytest.raises(ValueError, match=r"batch item\(s\) \[1\].*on_missing=centre"):
        network.embed(torch.cat([astronaut, blank]))
    fallback = DlibIdentity(on_missing="centre", upsample=0)
    embeddings = fallback.embed(torch.cat([astronaut, blank]))
    assert torch.allclose(embeddings[:1], network.embed(astronaut), atol=1e-5) and torch.isfinite(embeddings).all()


def test_bad_input(network):
    with pytest.raises(ValueError, match="images"):
        network.embed(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="NaN"):
        network.embed(torch.full((1, 3, 64, 64), float("nan")))
    with pytest.raises(ValueError, match="on_missing"):
        DlibIdentity(on_missing="skip")
    with pytest.raises(ValueError, match="embeddings b"):
        cosine_distance(torch.ones(2, 4), torch.ones(2, 3))


def test_none_identity():
    network = NoIdentity()
    embeddings = network.embed(torch.zeros(3, 3, 16, 16))
    assert embeddings.shape == (3, 0) and network.distance(embeddings, embeddings).tolist() == [0.0, 0.0, 0.0]


def test_configs_instantiate():
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module("conf", version_base="1.3"):
        for name, expected in (("none", NoIdentity), ("dlib", DlibIdentity)):
            assert isinstance(instantiate(compose(config_name=f"identity/{name}").identity), expected)
        arcface = compose(config_name="identity/arcface").identity
        assert arcface.file_name == "w600k_r50.onnx"
