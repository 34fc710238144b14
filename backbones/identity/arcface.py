"""ArcFace (insightface recognition models, e.g. buffalo_l's ``w600k_r50.onnx``) in torch.

The user provides the ONNX file (nothing is downloaded): by default
``~/.insightface/models/<model_name>/<file_name>``, or any ``model_path``. `OnnxGraphModule` turns
the ONNX graph into a torch module: every initialiser becomes a buffer under its ONNX name, and the
graph's nodes run as the matching torch ops in the file's order. It covers the op set of
insightface's IResNet exports (Conv, BatchNormalization, PRelu, Add, Flatten, Gemm, ... with or
without conv+BN folding), so the same code reads IResNet-18/34/50/100 files whatever the exporter
named its tensors. No torchvision, no onnx2torch.

Conventions as insightface's ``ArcFaceONNX``: 112x112 RGB chips aligned with ``norm_crop`` to the
5-point ArcFace template; network input (pixel - 127.5) / 127.5, i.e. our [-1, 1] images as they
are, or raw pixels for MXNet exports, which normalise inside the graph (`takes_raw_pixels`, the
rule ``ArcFaceONNX`` applies); the 512-d output is normalised to unit length.

Two paths to the same embedding: the torch graph (differentiable, aligned by `extract_chips`; the
gradient editor's identity term) and, with ``evaluation_backend="insightface"``, insightface's own
model-zoo ``ArcFaceONNX`` on onnxruntime (`InsightFaceRecognizer`: ``norm_crop`` from the same 5
points, its own input mean/std), used for embeddings computed without autograd, such as
``editing.evaluate``'s L_ID. Both align on the points of `FacePointDetector("arcface5")`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backbones.identity.alignment import (
    ARCFACE_TEMPLATE_112,
    FacePointDetector,
    centred_chip_to_image,
    extract_chips,
    images_to_uint8,
    template_chip_to_image,
)
from backbones.identity.base import IdentityNetwork, check_images, check_missing_policy, raise_if_missing
from common.errors import UserError

DEFAULT_MODEL_NAME = "buffalo_l"
DEFAULT_FILE_NAME = "w600k_r50.onnx"
ARCFACE_INPUT_SIZE = 112
EVALUATION_BACKENDS = ("torch", "insightface")


def default_models_root() -> Path:
    """$INSIGHTFACE_HOME/models if set, else ~/.insightface/models (insightface's own default)."""
    return Path(os.environ.get("INSIGHTFACE_HOME", Path.home() / ".insightface")).expanduser() / "models"


def takes_raw_pixels(graph: Any) -> bool:
    """insightface's ``ArcFaceONNX`` rule for an ONNX graph: MXNet exports normalise inside the graph, seen as a
    node named Sub*/_minus* and one named Mul*/_mul* among its first 8 nodes; they take pixels in [0, 255],
    every other recognition model (pixel - 127.5) / 127.5."""
    names = [node.name for node in graph.node[:8]]
    return any(name.startswith(("Sub", "_minus")) for name in names) and any(
        name.startswith(("Mul", "_mul")) for name in names
    )


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, **attrs: Any) -> torch.Tensor:
    pads = list(attrs.get("pads", [0] * 4))
    half = len(pads) // 2
    if pads[:half] != pads[half:]:  # asymmetric: pad explicitly (ONNX order: begins then ends)
        x = F.pad(x, [pads[half + 1], pads[1], pads[half], pads[0]])
        pads = [0] * len(pads)
    return F.conv2d(
        x,
        weight,
        bias,
        stride=tuple(attrs.get("strides", [1, 1])),
        padding=tuple(pads[:half]),
        dilation=tuple(attrs.get("dilations", [1, 1])),
        groups=attrs.get("group", 1),
    )


def _gemm(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None, **attrs: Any) -> torch.Tensor:
    a = a.transpose(0, 1) if attrs.get("transA", 0) else a
    b = b.transpose(0, 1) if attrs.get("transB", 0) else b
    out = attrs.get("alpha", 1.0) * (a @ b)
    return out if c is None else out + attrs.get("beta", 1.0) * c


def _reshape(x: torch.Tensor, shape: torch.Tensor, **attrs: Any) -> torch.Tensor:
    target = [
        x.shape[i] if size == 0 and not attrs.get("allowzero", 0) else size for i, size in enumerate(shape.tolist())
    ]
    return x.reshape(target)


def _flatten(x: torch.Tensor, **attrs: Any) -> torch.Tensor:
    axis = attrs.get("axis", 1) % max(x.dim(), 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _batch_norm(x, scale, bias, mean, var, **attrs):
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))


_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "PRelu": lambda x, slope, **a: torch.where(x >= 0, x, x * slope),
    "Relu": lambda x, **a: F.relu(x),
    "Add": lambda a, b, **_: a + b,
    "Sub": lambda a, b, **_: a - b,
    "Mul": lambda a, b, **_: a * b,
    "Div": lambda a, b, **_: a / b,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "MatMul": lambda a, b, **_: a @ b,
    "Reshape": _reshape,
    "Identity": lambda x, **_: x,
    "Dropout": lambda x, *rest, **_: x,
    "GlobalAveragePool": lambda x, **_: x.mean(dim=(2, 3), keepdim=True),
}


class OnnxGraphModule(nn.Module):
    """A feed-forward ONNX graph as a torch module: input (B, C, H, W) -> its first output (B, D).

    Initialisers are buffers; `input_shape` is (C, H, W) from the graph's declared input.
    """

    def __init__(self, model: Any, source: str = "ONNX model"):
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        initialiser_names = {tensor.name for tensor in graph.initializer}
        inputs = [value for value in graph.input if value.name not in initialiser_names]
        if len(inputs) != 1:
            raise UserError(f"{source} has {len(inputs)} image inputs; an insightface recognition model has one")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or dims[1:] != [3, ARCFACE_INPUT_SIZE, ARCFACE_INPUT_SIZE]:
            raise ValueError(
                f"{source} takes input of shape {dims}, but an ArcFace recognition model takes "
                f"(N, 3, {ARCFACE_INPUT_SIZE}, {ARCFACE_INPUT_SIZE}); use an insightface recognition model such as {DEFAULT_FILE_NAME}"
            )
        self.input_name = inputs[0].name
        self.input_shape = tuple(dims[1:])
        self.output_name = graph.output[0].name
        self._buffer_of: dict[str, str] = {}
        for index, tensor in enumerate(graph.initializer):
            self._register(f"initialiser_{index}", tensor.name, torch.from_numpy(numpy_helper.to_array(tensor).copy()))
        self.nodes: list[tuple[str, list[str], list[str], dict[str, Any]]] = []
        for index, node in enumerate(graph.node):
            attrs = _attributes(node)
            if node.op_type == "Constant":
                self._register(
                    f"constant_{index}", node.output[0], torch.from_numpy(numpy_helper.to_array(attrs["value"]).copy())
                )
                continue
            if node.op_type not in _OPS:
                raise UserError(
                    f"{source} uses ONNX op {node.op_type!r}, which this loader does not support; "
                    f"use an insightface IResNet recognition model such as {DEFAULT_FILE_NAME}"
                )
            self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))
        self.normalises_input = takes_raw_pixels(graph)

    def _register(self, buffer_name: str, onnx_name: str, value: torch.Tensor) -> None:
        if value.is_floating_point():
            value = value.float()
        self.register_buffer(buffer_name, value)
        self._buffer_of[onnx_name] = buffer_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, 112, 112) -> the graph's first output (B, D)."""
        values: dict[str, torch.Tensor] = {self.input_name: x}

        def value(name: str) -> torch.Tensor | None:
            if name == "":
                return None
            if name in values:
                return values[name]
            return getattr(self, self._buffer_of[name])

        for op, inputs, outputs, attrs in self.nodes:
            values[outputs[0]] = _OPS[op](*[value(name) for name in inputs], **attrs)
        return values[self.output_name]


def resolve_model_path(
    model_path: str | Path | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    file_name: str = DEFAULT_FILE_NAME,
    root: str | Path | None = None,
) -> Path:
    """`model_path`, else <root>/<model_name>/<file_name>; UserError naming the file and folder if missing."""
    path = (
        Path(model_path).expanduser()
        if model_path
        else Path(root or default_models_root()).expanduser() / model_name / file_name
    )
    if not path.is_file():
        raise UserError(
            f"ArcFace model not found at {path}: put insightface's {file_name} (from the {model_name} pack) "
            f"into {path.parent}/ or set identity.model_path to your recognition .onnx file"
        )
    return path


def load_arcface_onnx(path: str | Path) -> OnnxGraphModule:
    """Read an insightface recognition .onnx file -> frozen OnnxGraphModule; UserError if unreadable."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf raises several unrelated types on corrupt files
        raise UserError(
            f"cannot read {path} as an ONNX model ({type(error).__name__}); re-download {Path(path).name}"
        ) from error
    return OnnxGraphModule(model, source=str(path)).eval().requires_grad_(False)


class InsightFaceRecognizer:
    """insightface's own recognition path on onnxruntime (no gradients) for one local .onnx file.

    ``insightface.model_zoo.get_model(path)`` routes the file by its input and output shapes (a square
    input of at least 112 pixels and one output: ``ArcFaceONNX``); faces are aligned by
    ``insightface.utils.face_align.norm_crop`` and normalised by the model's own input mean/std.
    Nothing is downloaded: the file must exist (`resolve_model_path`).
    """

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        try:
            from insightface.model_zoo import get_model
        except ImportError as error:
            raise UserError(
                f"identity.evaluation_backend=insightface needs the insightface package ({error}); "
                "pip install 'rankone-edit[insightface]' or set identity.evaluation_backend=torch"
            ) from error
        model = get_model(str(path), providers=providers)
        if getattr(model, "taskname", None) != "recognition":
            raise UserError(
                f"insightface does not read {path} as a recognition model (it takes a square image of at "
                f"least 112 pixels and gives one output); use a recognition model such as {DEFAULT_FILE_NAME}"
            )
        self.model = model
        self.input_size = int(model.input_size[0])

    def align(self, frames: np.ndarray, points: np.ndarray) -> np.ndarray:
        """frames (B, H, W, 3) uint8 BGR, points (B, 5, 2) pixels -> chips (B, S, S, 3) uint8 BGR (``norm_crop``)."""
        from insightface.utils import face_align

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-image's notice about the estimate() norm_crop calls
            return np.stack(
                [
                    face_align.norm_crop(frame, landmark=face_points.astype(np.float32), image_size=self.input_size)
                    for frame, face_points in zip(frames, points)
                ]
            )

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """chips (B, S, S, 3) uint8 BGR aligned faces -> raw network outputs (B, D) float32 (``ArcFaceONNX.get_feat``)."""
        return np.asarray(self.model.get_feat(list(chips)), dtype=np.float32)


class ArcFaceIdentity(IdentityNetwork):
    """insightface ArcFace: images (B, 3, H, W) in [-1, 1] -> unit (B, 512) (D from the model).

    ``evaluation_backend``: "torch" runs every embedding through the torch graph; "insightface" runs
    embeddings computed without autograd (``torch.no_grad()``, as ``editing.observation`` does) through
    `InsightFaceRecognizer` on onnxruntime instead, and those under autograd (the gradient editor)
    through the torch graph, since onnxruntime gives no gradients.
    """

    name = "arcface"

    def __init__(
        self,
        model_path: str | Path | None = None,
        model_name: str = DEFAULT_MODEL_NAME,
        file_name: str = DEFAULT_FILE_NAME,
        root: str | Path | None = None,
        upsample: int = 1,
        on_missing: str = "error",
        evaluation_backend: str = "torch",
    ):
        super().__init__()
        if evaluation_backend not in EVALUATION_BACKENDS:
            raise UserError(
                f"unknown identity.evaluation_backend {evaluation_backend!r}; use one of {', '.join(EVALUATION_BACKENDS)}"
            )
        self.on_missing = check_missing_policy(on_missing)
        path = resolve_model_path(model_path, model_name, file_name, root)
        self.network = load_arcface_onnx(path)
        self.insightface = InsightFaceRecognizer(path) if evaluation_backend == "insightface" else None
        self.detector = FacePointDetector("arcface5", upsample=upsample)
        with torch.no_grad():
            self.embedding_dim = int(self.network(torch.zeros(1, *self.network.input_shape)).shape[1])
        self.freeze()

    def alignment_points(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> the 5 ArcFace points (B, 5, 2) float64 pixels (non-differentiable).

        Where no face is found, ``on_missing="error"`` raises and ``"centre"`` places the template on the
        largest centred square of the image (`centred_chip_to_image`).
        """
        check_images(images)
        points, found = self.detector.detect(images)
        if self.on_missing == "error":
            raise_if_missing(found)
        centre = centred_chip_to_image(images.shape[0], images.shape[2], images.shape[3], ARCFACE_INPUT_SIZE)
        template = torch.tensor(ARCFACE_TEMPLATE_112, dtype=torch.float64)
        centred_points = template @ centre[:, :, :2].transpose(1, 2) + centre[:, :, 2:].transpose(1, 2)
        return torch.where(found[:, None, None], points, centred_points)

    def chip_geometry(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> chip_to_image (B, 2, 3) for 112x112 chips (non-differentiable)."""
        return template_chip_to_image(
            self.alignment_points(images), torch.tensor(ARCFACE_TEMPLATE_112, dtype=torch.float64)
        )

    def chips(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> aligned chips (B, 3, 112, 112) in [-1, 1] (black outside)."""
        pixels = extract_chips((images + 1.0) * 127.5, self.chip_geometry(images), ARCFACE_INPUT_SIZE)
        return pixels / 127.5 - 1.0

    def embed_chips(self, chips: torch.Tensor) -> torch.Tensor:
        """Aligned chips (B, 3, 112, 112) in [-1, 1] -> unit embeddings (B, D) through the torch graph."""
        network_input = (chips + 1.0) * 127.5 if self.network.normalises_input else chips
        return F.normalize(self.network(network_input), dim=1)

    def insightface_embed(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> unit embeddings (B, D) through insightface on onnxruntime (no gradients).

        The images are rounded to uint8 BGR, aligned by ``norm_crop`` on `alignment_points` and embedded
        by ``ArcFaceONNX.get_feat``.
        """
        if self.insightface is None:
            raise ValueError(
                "this ArcFaceIdentity was built with evaluation_backend=torch; "
                "build it with evaluation_backend=insightface to use insightface"
            )
        points = self.alignment_points(images).numpy()
        frames = np.ascontiguousarray(images_to_uint8(images)[..., ::-1])
        features = torch.from_numpy(self.insightface.embed_chips(self.insightface.align(frames, points)))
        return F.normalize(features, dim=1).to(images.device)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> unit embeddings (B, D); differentiable w.r.t. images under autograd
        (without autograd and with ``evaluation_backend="insightface"``: `insightface_embed`)."""
        if self.insightface is not None and not torch.is_grad_enabled():
            return self.insightface_embed(images)
        return self.embed_chips(self.chips(images))
