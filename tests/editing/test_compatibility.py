import pytest
from editing_standins import TinyRegressor

from editing.compatibility import check_regressor_matches, latent_shape_of


@pytest.mark.parametrize("space", ["z", "w", "w+"])
def test_matching_regressor_passes(space, generator):
    regressor = TinyRegressor(latent_space=space)
    check_regressor_matches(regressor, generator, space)
    check_regressor_matches(regressor, generator)
    assert latent_shape_of(generator, space) == regressor.latent_shape


def test_mismatches_are_one_line_errors(generator):
    regressor = TinyRegressor(latent_space="w")
    with pytest.raises(ValueError, match="latent space 'w', not 'w\\+'; set latent_space=w"):
        check_regressor_matches(regressor, generator, "w+")
    regressor.metadata["generator"] = "stylegan2"
    with pytest.raises(ValueError, match="trained for generator 'stylegan2', not 'tiny'"):
        check_regressor_matches(regressor, generator)
    regressor.metadata.update(generator="tiny", generator_checksum="0123")
    with pytest.raises(ValueError, match="other tiny weights \\(checksum 0123"):
        check_regressor_matches(regressor, generator)
    regressor.metadata.pop("generator_checksum")
    regressor.nrsfm.metadata["generator_checksum"] = "4567"
    with pytest.raises(ValueError, match="checksum 4567"):
        check_regressor_matches(regressor, generator)
    regressor.nrsfm.metadata["generator_checksum"] = generator.checksum()
    check_regressor_matches(regressor, generator)
    regressor.latent_shape = (8,)
    with pytest.raises(ValueError, match="latents of shape \\(8,\\), but tiny makes \\(16,\\)"):
        check_regressor_matches(regressor, generator)
    with pytest.raises(ValueError, match="unknown latent space 'x'"):
        latent_shape_of(generator, "x")
