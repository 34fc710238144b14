"""The embedded default generator: a differentiable 3D face renderer that knows its ground truth."""

from backbones.synthetic.generator import SyntheticGenerator, build_synthetic_generator

__all__ = ["SyntheticGenerator", "build_synthetic_generator"]
