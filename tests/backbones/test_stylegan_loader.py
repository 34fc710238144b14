"""Loader entry points, our weights-only checkpoint format, configs and the Generator interface."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_stylegan_reference import generator_from_fixture, load_fixture

import conf
from backbones.generator import Generator
from backbones.stylegan import (
    StyleGAN2Generator,
    StyleGAN3Generator,
    load_stylegan,
    load_stylegan2,
    load_stylegan3,
    save_stylegan_checkpoint,
)
from backbones.stylegan.checkpoint import checkpoint_dict
from backbones.stylegan.nvidia import generator_kwargs
from backbones.stylegan.safe_pickle import PersistentRecord
from common.errors import UserError

GENERATOR_CONF = Path(conf.__file__).parent / "generator"


def tiny_stylegan2(**kwargs) -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(32, 32, 16, num_mapping_layers=2, channel_base=256, channel_max=32, **kwargs).freeze()


def test_missing_file_names_the_official_checkpoint(tmp_path):
    with pytest.raises(
        UserError, match=r"ffhq\.pkl not found: put NVIDIA's official stylegan2-ffhq-1024x1024\.pkl there"
    ):
        load_stylegan2(str(tmp_path / "ffhq.pkl"))
    with pytest.raises(
        UserError, match=r"official stylegan3-r-ffhq-1024x1024\.pkl \(or stylegan3-t-ffhq-1024x1024\.pkl\)"
    ):
        load_stylegan3(str(tmp_path / "ffhq.pkl"))


def test_weights_only_checkpoint_round_trip(tmp_path):
    fixture = load_fixture("sg3r_tiny.npz")
    original = generator_from_fixture(fixture)
    path = save_stylegan_checkpoint(original, tmp_path / "sg3r.pt")
    assert not list(tmp_path.glob(".*.tmp"))
    raw = torch.load(path, weights_only=True)
    assert raw["architecture"] == "stylegan3" and raw["name"] == "stylegan3-r"
    loaded = load_stylegan3(str(path), truncation_psi=0.7)
    assert loaded.name == "stylegan3-r" and loaded.checksum() == original.checksum()
    z = torch.from_numpy(fixture["z"][:1])
    with torch.no_grad():
        assert torch.equal(loaded.mapping(z), original.mapping(z, 0.7))
        ws = torch.from_numpy(fixture["ws"][:1])
        assert torch.equal(loaded.synthesis(ws), original.synthesis(ws))


def test_architecture_mismatch_is_a_user_error(tmp_path):
    path = save_stylegan_checkpoint(tiny_stylegan2(), tmp_path / "sg2.pt")
    assert load_stylegan(path).name == "stylegan2"
    with pytest.raises(UserError, match="holds a stylegan2 network, not stylegan3; use generator=stylegan2"):
        load_stylegan3(str(path))


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    generator = tiny_stylegan2()
    with_nan = checkpoint_dict(generator)
    with_nan["state_dict"]["synthesis.b4.const"][0, 0, 0] = float("nan")
    torch.save(with_nan, tmp_path / "nan.pt")
    with pytest.raises(UserError, match=r"synthesis\.b4\.const holds NaN"):
        load_stylegan(tmp_path / "nan.pt")

    wrong_shape = checkpoint_dict(generator)
    wrong_shape["state_dict"]["mapping.fc0.weight"] = torch.zeros(3, 3)
    torch.save(wrong_shape, tmp_path / "shape.pt")
    with pytest.raises(UserError, match="do not fit a stylegan2"):
        load_stylegan(tmp_path / "shape.pt")

    missing_key = checkpoint_dict(generator)
    del missing_key["state_dict"]["synthesis.b8.conv0.weight"]
    torch.save(missing_key, tmp_path / "missing.pt")
    with pytest.raises(UserError, match=r"missing synthesis\.b8\.conv0\.weight"):
        load_stylegan(tmp_path / "missing.pt")

    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="neither a rankone-edit StyleGAN checkpoint nor a rosinality"):
        load_stylegan(tmp_path / "foreign.pt")

    torch.save({"object": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")
    with pytest.raises(UserError, match="not a readable weights-only torch checkpoint"):
        load_stylegan(tmp_path / "module.pt")


def test_nvidia_kwargs_translation_refuses_what_it_cannot_build():
    base = {"z_dim": 8, "w_dim": 8, "img_resolution": 16, "img_channels": 3, "c_dim": 0}
    record = PersistentRecord(
        "Generator", 6, "", {"_init_kwargs": {**base, "num_fp16_res": 4, "mapping_kwargs": {"num_layers": 3}}}
    )
    assert generator_kwargs(record, "stylegan2")["num_mapping_layers"] == 3
    # stylegan2-ada-pytorch nests the synthesis kwargs; TF-converted networks have no clamp.
    nested = {
        **base,
        "mapping_kwargs": {"num_layers": 8, "w_avg_beta": 0.995, "embed_features": None},
        "synthesis_kwargs": {"channel_base": 16384, "conv_clamp": None, "architecture": "skip", "activation": "lrelu"},
    }
    translated = generator_kwargs(PersistentRecord("Generator", 6, "", {"_init_kwargs": nested}), "stylegan2")
    assert (
        translated["channel_base"] == 16384
        and translated["conv_clamp"] is None
        and translated["num_mapping_layers"] == 8
    )
    positional = PersistentRecord("Generator", 6, "", {"_init_args": (8, 0, 8, 16, 3), "_init_kwargs": {}})
    assert generator_kwargs(positional, "stylegan3") == {
        **{k: v for k, v in base.items() if k != "c_dim"},
        "num_mapping_layers": 2,
    }
    for kwargs, message in [
        ({**base, "c_dim": 10}, "class-conditional"),
        ({**base, "img_channels": 1}, "only RGB"),
        ({**base, "architecture": "resnet"}, "'skip' generator architecture"),
        ({**base, "some_new_option": 1}, r"unsupported Generator kwargs \['some_new_option'\]"),
    ]:
        with pytest.raises(UserError, match=message):
            generator_kwargs(PersistentRecord("Generator", 6, "", {"_init_kwargs": kwargs}), "stylegan2")


@pytest.mark.parametrize("name", ["stylegan2", "stylegan3"])
def test_configs_instantiate_a_ready_generator(tmp_path, name):
    cfg = OmegaConf.load(GENERATOR_CONF / f"{name}.yaml")
    assert OmegaConf.is_missing(cfg, "path")
    if name == "stylegan2":
        generator = tiny_stylegan2()
    else:
        generator = generator_from_fixture(load_fixture("sg3t_tiny.npz"))
    cfg.path = str(save_stylegan_checkpoint(generator, tmp_path / f"{name}.pt"))
    cfg.truncation_psi = 0.5
    loaded = instantiate(cfg)
    assert isinstance(loaded, Generator) and loaded.architecture == name
    assert loaded.truncation_psi == 0.5 and not any(p.requires_grad for p in loaded.parameters())
    cfg.path = str(tmp_path / "absent.pkl")
    with pytest.raises(Exception, match="not found: put NVIDIA's official"):
        instantiate(cfg)


def test_generator_interface_and_input_checks():
    generator = tiny_stylegan2(noise_mode="none")
    assert generator.num_ws == 6 and generator.img_resolution == 16 and generator.w_avg.shape == (32,)
    z = generator.z_from_seeds([0, 1, 2])
    assert torch.equal(z, generator.z_from_seeds([0, 1, 2]))
    ws = generator.mapping(z)
    assert ws.shape == (3, 6, 32)
    assert torch.allclose(generator.to_ws(ws[:, 0], "w"), ws)
    images = generator(z)
    assert images.shape == (3, 3, 16, 16) and bool(torch.isfinite(images).all())
    # Truncation pulls toward w_avg: psi = 0 gives w_avg on every row.
    assert torch.allclose(generator.mapping(z, 0.0), generator.w_avg.expand(3, 6, 32))

    with pytest.raises(ValueError, match=r"z must have shape \(B, 32\)"):
        generator.mapping(torch.zeros(2, 31))
    with pytest.raises(ValueError, match="z contains NaN"):
        generator.mapping(torch.full((1, 32), float("nan")))
    with pytest.raises(ValueError, match=r"ws must have shape \(B, 6, 32\)"):
        generator.synthesis(torch.zeros(1, 5, 32))
    with pytest.raises(ValueError, match="noise_mode must be one of const, random, none"):
        generator.synthesis(ws, noise_mode="fixed")
    with pytest.raises(ValueError, match="truncation_psi must be a finite number"):
        generator.mapping(z, float("inf"))


def test_gradients_reach_the_latents_only():
    generator = StyleGAN3Generator(16, 16, 16, channel_base=256, channel_max=16, num_layers=4, num_critical=1).freeze()
    assert generator.num_ws == 6 and generator.name == "stylegan3-t"
    ws = generator.mapping(generator.z_from_seeds([3])).detach().requires_grad_(True)
    generator.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and float(ws.grad.abs().sum()) > 0
    assert all(p.grad is None for p in generator.parameters())
