"""StyleGAN2 and StyleGAN3 generators (plain torch) loaded from NVIDIA checkpoints without running their code.

Public API:
- `load_stylegan(path, architecture=None, truncation_psi=1.0, noise_mode="const", device="cpu")`
- `load_stylegan2(path, ...)`, `load_stylegan3(path, ...)`: Hydra targets of conf/generator/.
- `StyleGAN2Generator`, `StyleGAN3Generator`: `backbones.generator.Generator` subclasses whose
  state dicts use NVIDIA's names.
- `save_stylegan_checkpoint(generator, path)`: our `torch.load(weights_only=True)` format.
- `read_network_pickle(path)`: NVIDIA pickles as data (`PersistentRecord` trees).
"""

from backbones.stylegan.checkpoint import save_stylegan_checkpoint
from backbones.stylegan.loader import load_stylegan, load_stylegan2, load_stylegan3
from backbones.stylegan.safe_pickle import PersistentRecord, UnsafePickleError, read_network_pickle
from backbones.stylegan.stylegan2 import StyleGAN2Generator
from backbones.stylegan.stylegan3 import StyleGAN3Generator, make_input_transform

__all__ = [
    "PersistentRecord",
    "StyleGAN2Generator",
    "StyleGAN3Generator",
    "UnsafePickleError",
    "load_stylegan",
    "load_stylegan2",
    "load_stylegan3",
    "make_input_transform",
    "read_network_pickle",
    "save_stylegan_checkpoint",
]
