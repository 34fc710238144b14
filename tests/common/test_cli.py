"""Every class of bad input on the command line ends with one ``error:`` line and exit status 2."""

import subprocess
import sys
import warnings

import pytest

from common.cli import check_command_line, exit_on_user_error, one_line_warning
from common.errors import UserError


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(UserError, match="unknown config key 'num_sample'; did you mean 'num_samples'"):
        check_command_line("sample", ["num_sample=10"])


def test_unknown_nested_key_names_the_closest_valid_key():
    with pytest.raises(UserError, match="did you mean 'generator.img_resolution'"):
        check_command_line("sample", ["generator.img_resolutoin=128"])


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(UserError, match="unknown edit 'nope'; choose one of: gradient, linear"):
        check_command_line("edit", ["edit=nope"])


def test_unknown_option_in_a_sweep_is_found():
    with pytest.raises(UserError, match="unknown landmarks 'nope'; choose one of: dlib, fan, mediapipe"):
        check_command_line("sample", ["-m", "landmarks=dlib,nope"])


def test_value_of_the_wrong_type_names_the_expected_type():
    with pytest.raises(UserError, match="seed must be an integer, got 'abc'"):
        check_command_line("sample", ["seed=abc"])
    with pytest.raises(UserError, match="save_ws must be true or false"):
        check_command_line("sample", ["save_ws=maybe"])
    with pytest.raises(UserError, match="truncation_psi must be a number"):
        check_command_line("sample", ["truncation_psi=high"])


def test_override_that_does_not_parse_is_quoted():
    with pytest.raises(UserError, match="cannot read the override 'seed=\\[1'"):
        check_command_line("sample", ["seed=[1"])


def test_adding_an_existing_key_says_to_drop_the_plus():
    with pytest.raises(UserError, match="config key 'seed' already exists; set it without the \\+"):
        check_command_line("sample", ["+seed=3"])


def test_good_command_lines_pass():
    check_command_line("sample", ["num_samples=10", "seed=3", "truncation_psi=1", "landmarks=mediapipe"])
    check_command_line(
        "sample", ["-m", "shard=0,1", "num_shards=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    )
    check_command_line("edit", ["faces=[1,2]", "yaw=20", "+alpha.0=1", "edit=gradient", "edit.lambda_id=0"])
    check_command_line("fit", ["--help"])


def test_user_errors_end_with_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        raise UserError("dataset x.h5 not found;\n create it first")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: dataset x.h5 not found; create it first\n"


def test_warnings_are_one_line_without_source():
    assert one_line_warning(UserWarning("target clamped\n to mean + 3 std"), UserWarning, __file__, 1, "code") == (
        "warning: target clamped to mean + 3 std\n"
    )
    with warnings.catch_warnings(record=True):
        assert "code" not in one_line_warning("x", UserWarning, __file__, 1, "code")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nrsfm.fit"], "error: config value samples is missing; set it on the command line (samples=...)"),
        (["sampling.sample", "seed=abc"], "error: seed must be an integer, got 'abc' (seed=...)"),
        (["editing.edit", "edit=nope"], "error: unknown edit 'nope'; choose one of: gradient, linear"),
        (
            ["regressor.train", "latent_spcae=w"],
            "error: unknown config key 'latent_spcae'; did you mean 'latent_space'?",
        ),
    ],
)
def test_commands_print_one_error_line(arguments, message, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", *arguments, f"paths.work_dir={tmp_path}"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), completed.stderr
