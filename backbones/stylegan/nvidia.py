"""Turn NVIDIA's `G_ema` record (see `safe_pickle`) into our StyleGAN2/StyleGAN3 generator.

The architecture is recognised from the state-dict names (`synthesis.b4.const`: StyleGAN2,
`synthesis.input.freqs`: StyleGAN3); NVIDIA's constructor kwargs are translated into ours. Kwargs
that only select fp16/memory-layout/training behaviour are dropped (this code always computes in
float32); kwargs that would change the network in a way not implemented here are refused by name.
"""

from __future__ import annotations

from typing import Any

import torch

from backbones.stylegan.safe_pickle import PersistentRecord
from backbones.stylegan.stylegan2 import StyleGAN2Generator
from backbones.stylegan.stylegan3 import StyleGAN3Generator
from backbones.stylegan.wrapper import StyleGANGenerator
from common.errors import UserError

GENERATOR_POSITIONAL_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")

# Kwargs that change only precision, memory layout or training-time behaviour.
_IGNORED_KWARGS = {"num_fp16_res", "fp16_channels_last", "channels_last", "fused_modconv_default", "magnitude_ema_beta"}
_IGNORED_MAPPING_KWARGS = {"w_avg_beta", "freeze_layers", "freeze_embed", "embed_features"}
_STYLEGAN3_SYNTHESIS_KWARGS = {
    "channel_base",
    "channel_max",
    "num_layers",
    "num_critical",
    "first_cutoff",
    "first_stopband",
    "last_stopband_rel",
    "margin_size",
    "output_scale",
    "conv_kernel",
    "filter_size",
    "lrelu_upsampling",
    "use_radial_filters",
    "conv_clamp",
}


def architecture_of(state_dict: dict[str, torch.Tensor]) -> str:
    """ "stylegan2" or "stylegan3" from the parameter names; UserError for anything else."""
    if "synthesis.input.freqs" in state_dict:
        return "stylegan3"
    if "synthesis.b4.const" in state_dict:
        return "stylegan2"
    raise UserError("the network is neither StyleGAN2 (synthesis.b4.const) nor StyleGAN3 (synthesis.input.freqs)")


def generator_kwargs(record: PersistentRecord, architecture: str) -> dict[str, Any]:
    """NVIDIA `Generator` init args/kwargs of `record` -> kwargs of our generator class."""
    kwargs = dict(zip(GENERATOR_POSITIONAL_ARGS, record.init_args))
    kwargs.update(record.init_kwargs)
    kwargs.update(kwargs.pop("synthesis_kwargs", None) or {})  # stylegan2-ada-pytorch nests them
    missing = [name for name in ("z_dim", "w_dim", "img_resolution") if name not in kwargs]
    if missing:
        raise UserError(f"the G_ema record lacks constructor arguments {missing}; the network pickle is incomplete")
    if kwargs.pop("c_dim", 0):
        raise UserError("the network is class-conditional (c_dim > 0); only unconditional generators are supported")
    if kwargs.get("img_channels", 3) != 3:
        raise UserError(f"the network makes {kwargs['img_channels']}-channel images; only RGB (3) is supported")

    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    ours: dict[str, Any] = {
        name: kwargs.pop(name) for name in ("z_dim", "w_dim", "img_resolution", "img_channels") if name in kwargs
    }
    if mapping.pop("activation", "lrelu") != "lrelu":
        raise UserError("the mapping network uses an activation other than lrelu, which is not supported")
    ours["num_mapping_layers"] = mapping.pop("num_layers", 8 if architecture == "stylegan2" else 2)
    if "lr_multiplier" in mapping:
        ours["mapping_lr_multiplier"] = mapping.pop("lr_multiplier")
    if architecture == "stylegan2" and mapping.get("layer_features") is not None:
        ours["mapping_layer_features"] = mapping.pop("layer_features")
    mapping.pop("layer_features", None)
    _refuse_unknown(set(mapping) - _IGNORED_MAPPING_KWARGS, "mapping_kwargs")

    for name in _IGNORED_KWARGS & set(kwargs):
        kwargs.pop(name)
    if architecture == "stylegan2":
        if kwargs.pop("activation", "lrelu") != "lrelu":
            raise UserError("only StyleGAN2 synthesis networks with lrelu activations are supported")
        if kwargs.pop("architecture", "skip") != "skip":
            raise UserError("only the StyleGAN2 'skip' generator architecture (config F) is supported")
        if not kwargs.pop("use_noise", True):
            raise UserError("StyleGAN2 networks without noise inputs are not supported")
        if "resample_filter" in kwargs:
            ours["resample_taps"] = [float(tap) for tap in kwargs.pop("resample_filter")]
        for name in ("channel_base", "channel_max", "conv_clamp"):
            if name in kwargs:
                ours[name] = kwargs.pop(name)
    else:
        for name in _STYLEGAN3_SYNTHESIS_KWARGS & set(kwargs):
            ours[name] = kwargs.pop(name)
    _refuse_unknown(set(kwargs), "Generator kwargs")
    return ours


def generator_from_record(
    record: PersistentRecord, *, truncation_psi: float = 1.0, noise_mode: str = "const"
) -> StyleGANGenerator:
    """Build our generator from NVIDIA's `G_ema` record and load its weights one-to-one."""
    state_dict = record.state_dict()
    architecture = architecture_of(state_dict)
    kwargs = generator_kwargs(record, architecture)
    return build_generator(architecture, kwargs, state_dict, truncation_psi=truncation_psi, noise_mode=noise_mode)


def build_generator(
    architecture: str,
    kwargs: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
) -> StyleGANGenerator:
    """Construct `architecture` ("stylegan2" | "stylegan3") from our kwargs, load `state_dict`
    strictly (every name and shape must match), return it frozen."""
    classes = {"stylegan2": StyleGAN2Generator, "stylegan3": StyleGAN3Generator}
    if architecture not in classes:
        raise UserError(f"unknown StyleGAN architecture {architecture!r}; expected stylegan2 or stylegan3")
    for name, tensor in state_dict.items():
        if not bool(torch.isfinite(tensor).all()):
            raise UserError(f"weight {name} holds NaN or infinite values; the checkpoint is corrupt")
    try:
        generator = classes[architecture](**kwargs, truncation_psi=truncation_psi, noise_mode=noise_mode)
    except TypeError as error:
        raise UserError(f"cannot build {architecture} from the stored arguments: {error}") from None
    try:
        result = generator.load_state_dict(_float32(state_dict), strict=False)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise UserError(f"the weights do not fit a {generator.name} built from the stored arguments: {first}") from None
    problems = [f"missing {name}" for name in result.missing_keys] + [
        f"unexpected {name}" for name in result.unexpected_keys
    ]
    if problems:
        shown = ", ".join(problems[:4]) + (f" (+{len(problems) - 4} more)" if len(problems) > 4 else "")
        raise UserError(f"the weights do not fit a {generator.name} built from the stored arguments: {shown}")
    return generator.freeze()


def _float32(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.to(torch.float32) for name, tensor in state_dict.items()}


def _refuse_unknown(names: set[str], where: str) -> None:
    if names:
        raise UserError(f"unsupported {where} {sorted(names)} in the network; this loader would silently ignore them")
