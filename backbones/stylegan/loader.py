"""Load a StyleGAN2/StyleGAN3 generator from a user-provided checkpoint file.

Accepted files (nothing is ever downloaded):
- NVIDIA network pickles (`stylegan2-ffhq-1024x1024.pkl`, `stylegan3-r-ffhq-1024x1024.pkl`,
  `stylegan3-t-ffhq-1024x1024.pkl`, stylegan2-ada-pytorch pickles, your own training snapshots):
  read with the restricted unpickler of `safe_pickle` (their embedded code is never executed);
  `G_ema` is used.
- Our `torch.load(weights_only=True)` checkpoints (see `checkpoint`).
- rosinality stylegan2-pytorch `.pt` checkpoints (`g_ema` [+ `latent_avg`]; see `rosinality`),
  also read with `weights_only=True`.
The Hydra configs `conf/generator/stylegan2.yaml` / `stylegan3.yaml` target `load_stylegan2` /
`load_stylegan3`.
"""

from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path

import torch

from backbones.stylegan.checkpoint import generator_from_checkpoint, is_stylegan_checkpoint
from backbones.stylegan.nvidia import generator_from_record
from backbones.stylegan.rosinality import generator_from_rosinality, is_rosinality_checkpoint
from backbones.stylegan.safe_pickle import PersistentRecord, read_network_pickle
from backbones.stylegan.wrapper import StyleGANGenerator, check_noise_mode, check_truncation_psi
from common.errors import UserError

OFFICIAL_CHECKPOINTS = {
    "stylegan2": "stylegan2-ffhq-1024x1024.pkl",
    "stylegan3": "stylegan3-r-ffhq-1024x1024.pkl (or stylegan3-t-ffhq-1024x1024.pkl)",
}
_TORCH_SUFFIXES = {".pt", ".pth", ".ckpt"}


def load_stylegan(
    path: str | Path,
    *,
    architecture: str | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    device: str = "cpu",
) -> StyleGANGenerator:
    """Read `path` and return a frozen generator on `device`.

    Args:
        path: an NVIDIA network pickle or one of our weights-only checkpoints.
        architecture: "stylegan2" or "stylegan3" to insist on one (None accepts either).
        truncation_psi: default truncation of `mapping` (1 = none).
        noise_mode: default of `synthesis`: const | random | none.
        device: torch device string.
    Raises:
        UserError: the file is missing, unreadable, unsafe, or not the expected generator.
    """
    truncation_psi = check_truncation_psi(truncation_psi)
    noise_mode = check_noise_mode(noise_mode)
    path = Path(str(path)).expanduser()
    if not path.is_file():
        official = OFFICIAL_CHECKPOINTS.get(architecture or "", " or ".join(OFFICIAL_CHECKPOINTS.values()))
        raise UserError(
            f"StyleGAN checkpoint {path} not found: put NVIDIA's official {official} there "
            "(or set generator.path to your own .pkl/.pt file)"
        )
    if zipfile.is_zipfile(path) or path.suffix in _TORCH_SUFFIXES:
        generator = _from_torch_file(path, truncation_psi, noise_mode)
    else:
        generator = _from_network_pickle(path, truncation_psi, noise_mode)
    if architecture is not None and generator.architecture != architecture:
        raise UserError(
            f"{path} holds a {generator.name} network, not {architecture}; use generator={generator.architecture}"
        )
    return generator.to(device)


def load_stylegan2(
    path: str, truncation_psi: float = 1.0, noise_mode: str = "const", device: str = "cpu"
) -> StyleGANGenerator:
    """Hydra target of `generator=stylegan2`: `load_stylegan` insisting on StyleGAN2."""
    return load_stylegan(
        path, architecture="stylegan2", truncation_psi=truncation_psi, noise_mode=noise_mode, device=device
    )


def load_stylegan3(
    path: str, truncation_psi: float = 1.0, noise_mode: str = "const", device: str = "cpu"
) -> StyleGANGenerator:
    """Hydra target of `generator=stylegan3`: `load_stylegan` insisting on StyleGAN3 (T or R)."""
    return load_stylegan(
        path, architecture="stylegan3", truncation_psi=truncation_psi, noise_mode=noise_mode, device=device
    )


def _from_network_pickle(path: Path, truncation_psi: float, noise_mode: str) -> StyleGANGenerator:
    data = read_network_pickle(path)
    record = data.get("G_ema") if isinstance(data, dict) else data
    if not isinstance(record, PersistentRecord):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path} holds no G_ema network (found {keys}); expected an NVIDIA network pickle")
    return generator_from_record(record, truncation_psi=truncation_psi, noise_mode=noise_mode)


def _from_torch_file(path: Path, truncation_psi: float, noise_mode: str) -> StyleGANGenerator:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # rosinality's training `args`
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is not a readable weights-only torch checkpoint ({first})") from None
    if is_stylegan_checkpoint(data):
        return generator_from_checkpoint(data, truncation_psi=truncation_psi, noise_mode=noise_mode)
    if is_rosinality_checkpoint(data):
        return generator_from_rosinality(data, truncation_psi=truncation_psi, noise_mode=noise_mode)
    keys = sorted(data)[:6] if isinstance(data, dict) else type(data).__name__
    raise UserError(
        f"{path} is a torch checkpoint but neither a rankone-edit StyleGAN checkpoint nor a rosinality "
        f"stylegan2-pytorch one (top-level {keys}); pass NVIDIA's .pkl or save_stylegan_checkpoint's .pt"
    )
