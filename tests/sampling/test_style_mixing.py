"""Style mixing in the sampling stage (`sampling.sample.mix_styles`, ``style_mixing=``) on the synthetic generator."""

import numpy as np
import pytest
import torch

from backbones.synthetic import build_synthetic_generator
from common.errors import UserError
from sampling.sample import mix_styles, render_batch, sample_dataset


@pytest.fixture(scope="module")
def generator():
    return build_synthetic_generator(img_resolution=32)


def test_every_row_is_the_seeds_own_w_or_its_partners(generator):
    seeds = np.arange(40)
    own = generator.mapping(generator.z_from_seeds(seeds))
    mixed = mix_styles(generator, seeds, own, 1.0, 0.5)
    is_own = (mixed == own).all(-1)
    partner = mixed[~is_own]
    assert 0.3 < (~is_own).float().mean() < 0.7
    # a partner row is one w shared by all of that sample's partner rows, and not the sample's own
    for i in range(len(seeds)):
        rows = mixed[i, ~is_own[i]]
        assert torch.equal(rows, rows[:1].expand_as(rows))
    assert not torch.isin(partner, own[:, 0]).all()


def test_the_mix_depends_only_on_the_seed(generator):
    seeds = np.array([3, 11, 12])
    first = mix_styles(generator, seeds, generator.mapping(generator.z_from_seeds(seeds)), 1.0, 0.5)
    alone = mix_styles(generator, seeds[1:2], generator.mapping(generator.z_from_seeds(seeds[1:2])), 1.0, 0.5)
    torch.testing.assert_close(first[1:2], alone)


def test_probability_zero_and_one(generator):
    seeds = np.arange(5)
    own = generator.mapping(generator.z_from_seeds(seeds))
    assert torch.equal(mix_styles(generator, seeds, own, 1.0, 0.0), own)
    everything = mix_styles(generator, seeds, own, 1.0, 1.0)
    assert not (everything == own).all(-1).any()


def test_render_batch_keeps_the_unmixed_w_and_renders_the_mixed_ws(generator):
    seeds = np.arange(6)
    rows, images = render_batch(generator, seeds, 1.0, save_ws=True, style_mixing=0.5)
    own = generator.mapping(generator.z_from_seeds(seeds))
    np.testing.assert_array_equal(rows["w"], own[:, 0].numpy())
    assert not np.array_equal(rows["ws"], own.numpy())
    np.testing.assert_allclose(images.numpy(), generator.synthesis(torch.from_numpy(rows["ws"])).numpy())


def test_mixing_needs_ws_and_a_probability(generator, tmp_path):
    with pytest.raises(UserError, match="add save_ws=true"):
        sample_dataset(generator, None, tmp_path / "s.h5", 0, 4, style_mixing=0.5)
    with pytest.raises(UserError, match=r"probability in \[0, 1\]"):
        sample_dataset(generator, None, tmp_path / "s.h5", 0, 4, save_ws=True, style_mixing=1.5)
