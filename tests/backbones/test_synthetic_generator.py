"""The synthetic generator: interface, W+ semantics, ground-truth conventions, gradients, config
and bad input."""

import copy

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from backbones.generator import Generator
from backbones.synthetic import SyntheticGenerator, build_synthetic_generator
from backbones.synthetic.face_model import EXPRESSION_NAMES, IDENTITY_NAMES
from backbones.synthetic.scene import GROUP_SIZES


@pytest.fixture(scope="module")
def generator() -> SyntheticGenerator:
    return SyntheticGenerator(img_resolution=128)


@pytest.fixture(scope="module")
def tiny_generator() -> SyntheticGenerator:
    """Built through the Hydra config, as the entry points build it."""
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="generator/synthetic", overrides=["generator.img_resolution=32"])
    return instantiate(cfg.generator)


def test_config_builds_a_frozen_generator(tiny_generator):
    assert isinstance(tiny_generator, Generator) and tiny_generator.name == "synthetic"
    assert tiny_generator.img_resolution == 32 and not tiny_generator.training
    assert all(not parameter.requires_grad for parameter in tiny_generator.parameters())


def test_interface_shapes_and_range(generator):
    z = generator.z_from_seeds([0, 1, 2])
    ws = generator.mapping(z)
    assert ws.shape == (3, generator.num_ws, generator.w_dim) == (3, 6, 64)
    ws[:, 3] += 0.1  # rows are separate memory, so W+ edits can write them in place
    images = generator.synthesis(ws, noise_mode="random")
    assert images.shape == (3, 3, 128, 128) and images.dtype == torch.float32
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.1
    truth = generator.ground_truth(ws)
    assert truth["rotation_deg"].shape == (3, 3)
    assert truth["expression"].shape == (3, len(EXPRESSION_NAMES))
    assert truth["identity"].shape == (3, len(IDENTITY_NAMES))
    assert truth["landmarks"].shape == (3, 68, 2)
    assert ((truth["landmarks"] > 0) & (truth["landmarks"] < 128)).all()


def test_same_seed_same_image_and_truncation(generator):
    first = generator.synthesis(generator.sample(2, seed=5))
    again = generator.synthesis(generator.mapping(generator.z_from_seeds([5, 6])))
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first[0], first[1])
    average = generator.mapping(generator.z_from_seeds([1, 2]), truncation_psi=0.0)
    torch.testing.assert_close(average, generator.w_avg.expand(2, generator.num_ws, -1))


def test_w_plus_rows_drive_their_own_parameter_groups(generator):
    ws = generator.sample(2, seed=11)
    mixed = ws.clone()
    mixed[0, 3] = ws[1, 3]  # row 3: rotation
    before, after, donor = (generator.ground_truth(x) for x in (ws[:1], mixed[:1], ws[1:]))
    torch.testing.assert_close(after["rotation_deg"], donor["rotation_deg"])
    torch.testing.assert_close(after["identity"], before["identity"])
    torch.testing.assert_close(after["expression"], before["expression"])
    mixed = ws.clone()
    mixed[0, 2] = ws[1, 2]  # row 2: expression
    after = generator.ground_truth(mixed[:1])
    torch.testing.assert_close(after["expression"], donor["expression"])
    torch.testing.assert_close(after["rotation_deg"], before["rotation_deg"])
    assert list(GROUP_SIZES)[:4] == ["identity", "appearance", "expression", "rotation"]


def test_w_space_entangles_pose_expression_and_identity(generator):
    w = generator.sample(1, seed=3)[:, 0]
    direction = torch.randn(1, generator.w_dim, generator=torch.Generator().manual_seed(0))
    before, after = (generator.ground_truth(generator.to_ws(x, "w")) for x in (w, w + 0.5 * direction))
    for key in ("rotation_deg", "expression", "identity"):
        assert (after[key] - before[key]).abs().max() > 1e-3, key


def test_rotation_sign_conventions(generator):
    """Positive yaw turns the nose tip to image left, positive pitch moves it down, positive roll
    lowers the eye on the image right (R = Rz Ry Rx, x right, y down, z away)."""
    params = generator.scene(generator.sample(1, seed=0))
    nose, eyes = 30, [36, 45]

    def landmarks_at(rotation):
        rotation_deg = torch.tensor([rotation], dtype=torch.float32)
        _, screen = generator.posed_vertices(params.__class__(**{**params.__dict__, "rotation_deg": rotation_deg}))
        return screen[0, :68]

    frontal = landmarks_at([0.0, 0.0, 0.0])
    assert landmarks_at([0.0, 20.0, 0.0])[nose, 0] < frontal[nose, 0] - 3
    assert landmarks_at([20.0, 0.0, 0.0])[nose, 1] > frontal[nose, 1] + 1.5
    rolled = landmarks_at([0.0, 0.0, 20.0])
    assert rolled[eyes[1], 1] - rolled[eyes[0], 1] > frontal[eyes[1], 1] - frontal[eyes[0], 1] + 5


def test_image_gradient_wrt_w_is_finite_and_nonzero(generator):
    w = generator.sample(2, seed=21)[:, 0].clone().requires_grad_(True)
    images = generator.synthesis(generator.to_ws(w, "w"))
    images.square().mean().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    w_plus = generator.sample(1, seed=22).clone().requires_grad_(True)
    generator.synthesis(w_plus)[..., 40:90, 40:90].mean().backward()
    assert (w_plus.grad.abs().sum(-1) > 0).all(), "every ws row must influence the image"


def test_gradcheck_tiny_render_float64(tiny_generator):
    model = copy.deepcopy(tiny_generator).double()
    ws = model.sample(1, seed=4).detach()
    directions = torch.randn(
        3, model.num_ws, model.w_dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )

    def render(coefficients):
        return model.synthesis(ws + torch.einsum("k,krc->rc", coefficients, directions)[None])

    coefficients = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(render, (coefficients,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_bad_input_raises(generator):
    with pytest.raises(ValueError, match="z latent"):
        generator.mapping(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="NaN"):
        generator.mapping(torch.full((1, generator.z_dim), float("nan")))
    with pytest.raises(ValueError, match="ws"):
        generator.synthesis(torch.zeros(1, 5, generator.w_dim))
    with pytest.raises(ValueError, match="NaN"):
        generator.synthesis(torch.full((1, generator.num_ws, generator.w_dim), float("nan")))
    with pytest.raises(ValueError, match="ws"):
        generator.ground_truth(torch.zeros(generator.num_ws, generator.w_dim))
    with pytest.raises(ValueError, match="w\\+ latent"):
        generator.to_ws(torch.zeros(1, 3, generator.w_dim), "w+")
    with pytest.raises(ValueError, match="truncation_psi"):
        generator.mapping(torch.zeros(1, generator.z_dim), truncation_psi=float("nan"))
    with pytest.raises(ValueError, match="noise_mode"):
        generator.synthesis(generator.sample(1), noise_mode="loud")
    with pytest.raises(ValueError, match="num_samples"):
        generator.sample(0)


def test_bad_options_raise_one_line_errors():
    with pytest.raises(ValueError, match="unknown generator=synthetic option.*colour"):
        build_synthetic_generator(colour="red")
    with pytest.raises(ValueError, match="generator.name"):
        build_synthetic_generator(name="stylegan2")
    with pytest.raises(ValueError, match="img_resolution"):
        build_synthetic_generator(img_resolution=8)
    with pytest.raises(ValueError, match="head_depth"):
        build_synthetic_generator(head_depth=9.0)
