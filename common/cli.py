"""The command line every entry point shares: ``python -m package.module key=value`` with Hydra.

An entry module has a pure ``run(cfg)``, a thin ``@hydra.main`` ``main(cfg)`` that calls it inside
`exit_on_user_error()`, and ``if __name__ == "__main__": launch("package.module", "<config>")``.
`launch` first composes the configuration from the command line with Hydra's compose API, so that
Hydra's own errors end like every other bad input, with one ``error:`` line and exit status 2:

- an unknown key names the closest valid key;
- an unknown option of a config group lists the valid options;
- a value whose type differs from the default's (``seed=abc``) names the expected type;
- an override that does not parse quotes the override.

Then it hands over to Hydra (single runs, ``-m`` sweeps, launchers, ``--help``). Warnings print as
one ``warning: ...`` line, without the source line Python shows by default.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

from common.errors import UserError

CONFIG_MODULE = "conf"
# Flags after which Hydra prints help or configs, or reads configs from elsewhere: nothing to check.
HYDRA_FLAGS = (
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--cfg",
    "-c",
    "--resolve",
    "--shell-completion",
    "-sc",
    "--version",
    "--config-dir",
    "-cd",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
)


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn user-facing errors raised inside the block into one stderr line and exit status 2.

    User-facing: `UserError`, the `ValueError`s, `FileNotFoundError`s and `OSError`s that input
    checks raise, and a config value left missing (``???``) or unresolvable. Programming errors
    still raise with their traceback.
    """
    try:
        yield
    except MissingMandatoryValue as error:
        _exit(f"config value {error.full_key} is missing; set it on the command line ({error.full_key}=...)")
    except InterpolationResolutionError as error:
        _exit(f"config value {error.full_key} cannot be resolved: {str(error).splitlines()[0]}")
    except (UserError, ValueError, FileNotFoundError, OSError) as error:
        _exit(str(error) or type(error).__name__)
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume where it stopped", file=sys.stderr)
        sys.exit(130)


def _exit(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


# Keys whose integer default stands for one of several kinds: a seed, a list of seeds, or a file.
FACE_KEYS = ("faces", "source", "target", "driving")


def launch(module: str, config_name: str, argv: Sequence[str] | None = None) -> None:
    """Check the command line against `config_name`, then run `module.main` (the ``@hydra.main`` function).

    The importable module's function runs, not ``__main__``'s, so launchers (joblib, submitit) and
    spawned workers can pickle it by module name.
    """
    warnings.formatwarning = one_line_warning
    with exit_on_user_error():
        check_command_line(config_name, sys.argv[1:] if argv is None else argv)
    importlib.import_module(module).main()


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """`warnings.formatwarning` replacement: ``warning: <message>`` on one line."""
    return f"warning: {' '.join(str(message).split())}\n"


def check_command_line(config_name: str, argv: Sequence[str]) -> None:
    """Raise a one-line UserError when the overrides in `argv` do not compose with `config_name`.

    Each value of a sweep (``shard=0,1``) is checked; Hydra's own overrides (``hydra.*``,
    ``hydra/launcher=...``) are left to Hydra.
    """
    if any(argument.split("=")[0] in HYDRA_FLAGS for argument in argv):
        return
    overrides = [
        override
        for override in _parse([arg for arg in argv if not arg.startswith("-")])
        if not override.is_hydra_override()
    ]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        groups = [_is_group(override) for override in overrides]
        first = [_with_value(override, _values(override)[0]) for override in overrides]
        for lines in _override_variants(overrides, groups, first):
            _compose(config_name, lines)
        base = _compose(config_name, [line for line, group in zip(first, groups) if group])
        config = _compose(config_name, first)
    for override, group in zip(overrides, groups):
        if not group and not (override.is_delete() or override.is_add() or override.is_force_add()):
            _check_type(override.key_or_group, _leaf(base, override.key_or_group), _leaf(config, override.key_or_group))


def build(node: DictConfig, what: str) -> Any:
    """`hydra.utils.instantiate` with the user-facing error of the target kept as the one-line error."""
    try:
        return instantiate(node)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, (UserError, ValueError, OSError)):
            raise cause from None
        raise UserError(f"could not build the {what} from its config: {' '.join(str(error).split())}") from error


def check_config_complete(cfg: DictConfig) -> None:
    """UserError naming the first missing (``???``) or unresolvable config value."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:
        raise UserError(
            f"config value {error.full_key} is missing; set it on the command line ({error.full_key}=...)"
        ) from error
    except OmegaConfBaseException as error:
        raise UserError(f"invalid config: {str(error).splitlines()[0]}") from error


def _parse(arguments: list[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(arguments)
    except OverrideParseException as error:
        reasons = [line for line in str(error).splitlines() if line.strip() and not line.startswith("See ")]
        reason = f" ({reasons[0].strip()})" if reasons else ""
        raise UserError(
            f'cannot read the override {error.override!r}{reason}; write key=value, quote lists: "key=[a,b]"'
        ) from error


def _values(override: Override) -> list[str]:
    """The value strings of `override`: one, or every value of a sweep."""
    if override.is_delete() and override.value() is None:
        return [""]
    return (
        list(override.sweep_string_iterator())
        if override.is_sweep_override()
        else [override.get_value_element_as_str()]
    )


def _with_value(override: Override, value: str) -> str:
    key = override.get_key_element()
    return key if override.is_delete() and not value else f"{key}={value}"


def _override_variants(overrides: list[Override], groups: list[bool], first: list[str]) -> Iterator[list[str]]:
    """The first value of every override, then each other value of a group sweep on its own."""
    yield first
    for index, override in enumerate(overrides):
        if groups[index]:
            for value in _values(override)[1:]:
                yield first[:index] + [_with_value(override, value)] + first[index + 1 :]


def _is_group(override: Override) -> bool:
    """Whether `override` chooses a config group option (``edit=linear``) rather than sets a value."""
    return GlobalHydra.instance().config_loader().repository.group_exists(override.key_or_group)


def _compose(config_name: str, lines: list[str]) -> DictConfig:
    try:
        return compose(config_name=config_name, overrides=lines)
    except MissingConfigException as error:
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        options = ", ".join(error.options or [])
        raise UserError(f"unknown {group or 'config'} {option!r}; choose one of: {options}") from error
    except ConfigCompositionException as error:
        raise UserError(_composition_message(error, config_name, lines)) from error
    except OmegaConfBaseException as error:
        raise UserError(f"invalid config value: {str(error).splitlines()[0]}") from error


def _composition_message(error: ConfigCompositionException, config_name: str, lines: list[str]) -> str:
    message = str(error)
    if message.startswith("Could not override '") and "To append" in message:
        key = message.split("'")[1]
        known = _flat_keys(
            compose(config_name=config_name, overrides=[line for line in lines if not line.startswith(key + "=")])
        )
        match = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
        hint = f"did you mean {match[0]!r}?" if match else "`--cfg job` lists the valid keys"
        return f"unknown config key {key!r}; {hint} (prefix a new key with +)"
    if message.startswith("Could not append to config"):
        key = message.split("'")[1]
        return f"config key {key!r} already exists; set it without the +: {key}=..."
    return " ".join(message.split("Config search path")[0].split())


def _flat_keys(config: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every key in `config` (nested mappings included)."""
    keys = []
    for key in config:
        path = f"{prefix}{key}"
        keys.append(path)
        value = config._get_node(key)
        if isinstance(value, DictConfig):
            keys.extend(_flat_keys(value, path + "."))
    return keys


def _leaf(config: DictConfig, key: str) -> Any:
    """The resolved value at dotted `key`, or None when it is absent, missing or does not resolve."""
    try:
        return OmegaConf.select(config, key, throw_on_missing=True)
    except OmegaConfBaseException:
        return None


def _check_type(key: str, default: Any, value: Any) -> None:
    """UserError when `value` has another kind than the default (bool, integer or number)."""
    if default is None or value is None or key in FACE_KEYS:
        return
    if isinstance(default, bool):
        expected, ok = "true or false", isinstance(value, bool)
    elif isinstance(default, int):
        expected, ok = "an integer", isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        expected, ok = "a number", isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        return
    if not ok:
        raise UserError(f"{key} must be {expected}, got {value!r} ({key}=...)")
