"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a torch module.

The network of dlib's ``dnn_face_recognition_ex.cpp``: input 150x150 RGB, pixels p in [0, 255]
become (p - mean_rgb) / 256; a 7x7/2 convolution, affine (folded batch norm), ReLU, 3x3/2 max
pooling; 14 residual blocks (conv3x3-affine-ReLU-conv3x3-affine plus shortcut, then ReLU); global
average pooling; a 128-output linear layer without bias. A down-sampling block convolves with
stride 2 and no padding and takes 2x2/2 average pooling as its shortcut; as dlib's ``add_prev_``,
the sum of two tensors of different sizes is taken over the larger size with the smaller one
zero-padded at the end (more channels, bottom rows, right columns).

The architecture is read from the file's layer sequence (`DlibResNet.from_layers`); a cache of
the result is a ``torch.load(weights_only=True)``-safe dict (see `load_dlib_resnet`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backbones.identity.dlib_format import DlibLayer, read_dlib_network
from common.errors import UserError
from common.io import atomic_path
from common.shapes import check_shape

CACHE_FORMAT_VERSION = 1
WEIGHTS_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"

# Layer kinds of one residual block, input to output (dlib's ares / ares_down templates).
_PLAIN_BLOCK = ("tag_or_skip", "con", "affine", "relu", "con", "affine", "add_prev", "relu")
_DOWN_BLOCK = (
    "tag_or_skip",
    "con",
    "affine",
    "relu",
    "con",
    "affine",
    "tag_or_skip",
    "tag_or_skip",
    "avg_pool",
    "add_prev",
    "relu",
)
_STEM = ("input_rgb_image_sized", "con", "affine", "relu", "max_pool")
_HEAD = ("avg_pool", "fc", "loss_metric")


def default_weights_path() -> Path:
    """Where face-recognition-models keeps the dlib descriptor weights (without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"{WEIGHTS_FILENAME} not found: install face-recognition-models "
            "(pip install face-recognition-models) or set identity.weights_path to the file"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models" / WEIGHTS_FILENAME


def default_cache_dir() -> Path:
    """$RANKONE_CACHE_DIR, else $XDG_CACHE_HOME/rankone-edit, else ~/.cache/rankone-edit."""
    if os.environ.get("RANKONE_CACHE_DIR"):
        return Path(os.environ["RANKONE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rankone-edit"


def _conv_from_layer(layer: DlibLayer) -> nn.Conv2d:
    values = layer.values
    num_filters, num_inputs, rows, cols = values["filters"]
    conv = nn.Conv2d(
        num_inputs,
        num_filters,
        (rows, cols),
        stride=(values["stride_y"], values["stride_x"]),
        padding=(values["padding_y"], values["padding_x"]),
    )
    flat = torch.from_numpy(values["params"].ravel())
    num_weights = num_filters * num_inputs * rows * cols
    conv.weight.data.copy_(flat[:num_weights].view(num_filters, num_inputs, rows, cols))
    conv.bias.data.copy_(flat[num_weights : num_weights + num_filters])
    return conv


class ChannelAffine(nn.Module):
    """dlib's affine_ layer in conv mode: x (B, C, H, W) -> x * scale[c] + shift[c]."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.register_buffer("scale", torch.ones(num_channels))
        self.register_buffer("shift", torch.zeros(num_channels))

    @classmethod
    def from_layer(cls, layer: DlibLayer) -> ChannelAffine:
        if layer.values["mode"] != 0:
            raise UserError(
                "dlib affine_ layer in fc mode where a conv-mode layer was expected; unsupported network file"
            )
        flat = torch.from_numpy(layer.values["params"].ravel())
        module = cls(flat.numel() // 2)
        module.scale.copy_(flat[: module.scale.numel()])
        module.shift.copy_(flat[module.scale.numel() :])
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale[:, None, None] + self.shift[:, None, None]


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev_: (B, C1, H1, W1) + (B, C2, H2, W2) -> (B, max C, max H, max W), smaller
    operand zero-padded after its last channel / row / column."""
    channels, rows, cols = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(x: torch.Tensor) -> torch.Tensor:
        pad = (0, cols - x.shape[3], 0, rows - x.shape[2], 0, channels - x.shape[1])
        return F.pad(x, pad) if any(pad) else x

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """relu(shortcut(x) + affine(conv(relu(affine(conv(x)))))); the shortcut is x, or 2x2/2 average
    pooling of x for a down-sampling block. (B, C_in, H, W) -> (B, C_out, H', W')."""

    def __init__(
        self,
        conv1: nn.Conv2d,
        affine1: ChannelAffine,
        conv2: nn.Conv2d,
        affine2: ChannelAffine,
        shortcut_pool: tuple[int, int] | None,
    ):
        super().__init__()
        self.conv1, self.affine1, self.conv2, self.affine2 = conv1, affine1, conv2, affine2
        self.shortcut_pool = shortcut_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = x if self.shortcut_pool is None else F.avg_pool2d(x, self.shortcut_pool[0], self.shortcut_pool[1])
        return F.relu(add_zero_padded(residual, shortcut))


class DlibResNet(nn.Module):
    """dlib's ResNet face descriptor: RGB pixels (B, 3, 150, 150) in [0, 255] -> (B, 128) descriptors,
    the raw network output exactly as dlib returns it (not normalised; norms are close to 1)."""

    def __init__(
        self,
        mean_rgb: list[float],
        input_size: int,
        stem_conv: nn.Conv2d,
        stem_affine: ChannelAffine,
        stem_pool: tuple[int, int],
        blocks: list[ResidualBlock],
        fc_weight: torch.Tensor,
    ):
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(mean_rgb, dtype=torch.float32))
        self.input_size = input_size
        self.stem_conv, self.stem_affine, self.stem_pool = stem_conv, stem_affine, stem_pool
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(fc_weight.shape[1], fc_weight.shape[0], bias=False)
        self.fc.weight.data.copy_(fc_weight)

    @property
    def embedding_dim(self) -> int:
        return self.fc.out_features

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, S, S) float RGB in [0, 255], S = input_size -> descriptors (B, 128)."""
        check_shape(pixels, ("B", 3, self.input_size, self.input_size), "face chips")
        x = (pixels - self.mean_rgb[:, None, None]) / 256.0
        x = F.relu(self.stem_affine(self.stem_conv(x)))
        x = F.max_pool2d(x, self.stem_pool[0], self.stem_pool[1])
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    def architecture(self) -> dict[str, Any]:
        """Plain description (ints, floats, lists) from which `from_architecture` rebuilds the module."""

        def conv_spec(conv: nn.Conv2d) -> list[int]:
            return [conv.in_channels, conv.out_channels, *conv.kernel_size, *conv.stride, *conv.padding]

        return {
            "input_size": self.input_size,
            "stem_conv": conv_spec(self.stem_conv),
            "stem_pool": list(self.stem_pool),
            "blocks": [
                {
                    "conv1": conv_spec(b.conv1),
                    "conv2": conv_spec(b.conv2),
                    "shortcut_pool": None if b.shortcut_pool is None else list(b.shortcut_pool),
                }
                for b in self.blocks
            ],
            "fc": [self.fc.out_features, self.fc.in_features],
        }

    @classmethod
    def from_architecture(cls, architecture: dict[str, Any]) -> DlibResNet:
        """An uninitialised module of the given `architecture()`; load its state dict next."""

        def conv(spec: list[int]) -> nn.Conv2d:
            c_in, c_out, kh, kw, sy, sx, py, px = spec
            return nn.Conv2d(c_in, c_out, (kh, kw), stride=(sy, sx), padding=(py, px))

        blocks = [
            ResidualBlock(
                conv(b["conv1"]),
                ChannelAffine(b["conv1"][1]),
                conv(b["conv2"]),
                ChannelAffine(b["conv2"][1]),
                None if b["shortcut_pool"] is None else tuple(b["shortcut_pool"]),
            )
            for b in architecture["blocks"]
        ]
        stem = conv(architecture["stem_conv"])
        return cls(
            [0.0, 0.0, 0.0],
            architecture["input_size"],
            stem,
            ChannelAffine(stem.out_channels),
            tuple(architecture["stem_pool"]),
            blocks,
            torch.zeros(architecture["fc"]),
        )

    @classmethod
    def from_layers(cls, layers: list[DlibLayer]) -> DlibResNet:
        """Build from `read_dlib_network` output; UserError if the layers are not this ResNet family."""
        kinds = [layer.kind for layer in layers]
        if tuple(kinds[: len(_STEM)]) != _STEM or tuple(kinds[-len(_HEAD) :]) != _HEAD:
            raise UserError(f"unsupported dlib network layout {kinds[:6]}...{kinds[-3:]}; expected {WEIGHTS_FILENAME}")
        pool = layers[4].values
        if pool["padding_y"] or pool["nr"] != pool["nc"] or pool["stride_y"] != pool["stride_x"]:
            raise UserError("unsupported max pooling in the dlib network stem")
        blocks, index = [], len(_STEM)
        while index < len(layers) - len(_HEAD):
            pattern = next((p for p in (_DOWN_BLOCK, _PLAIN_BLOCK) if tuple(kinds[index : index + len(p)]) == p), None)
            if pattern is None:
                raise UserError(f"unsupported dlib layer sequence at layer {index}: {kinds[index : index + 8]}")
            part = layers[index : index + len(pattern)]
            shortcut_pool = None
            if pattern is _DOWN_BLOCK:
                avg = part[8].values
                shortcut_pool = (avg["nr"], avg["stride_y"])
            blocks.append(
                ResidualBlock(
                    _conv_from_layer(part[1]),
                    ChannelAffine.from_layer(part[2]),
                    _conv_from_layer(part[4]),
                    ChannelAffine.from_layer(part[5]),
                    shortcut_pool,
                )
            )
            index += len(pattern)
        fc = layers[-2].values
        if fc["has_bias"] or layers[-3].values["nr"] != 0:
            raise UserError("unsupported head in the dlib network (expected global average pooling and fc_no_bias)")
        fc_weight = torch.from_numpy(fc["params"].reshape(fc["num_inputs"], fc["num_outputs"]).T.copy())
        size = layers[0].values["rows"]
        return cls(
            layers[0].values["mean_rgb"],
            size,
            _conv_from_layer(layers[1]),
            ChannelAffine.from_layer(layers[2]),
            (pool["nr"], pool["stride_y"]),
            blocks,
            fc_weight,
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _save_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_dlib_resnet(weights_path: str | Path | None = None, cache_dir: str | Path | None = None) -> DlibResNet:
    """Parse dlib's .dat file (default: the one of face-recognition-models) into a frozen DlibResNet.

    The parsed module is cached as ``<cache_dir>/dlib_resnet_<sha256[:16]>.pt`` (a plain dict of
    tensors, ints and lists, written atomically and read back with ``weights_only=True``);
    ``cache_dir=None`` means `default_cache_dir()`, ``cache_dir=""`` disables the cache.
    """
    path = Path(weights_path) if weights_path else default_weights_path()
    if not path.is_file():
        raise UserError(
            f"{WEIGHTS_FILENAME} not found at {path}; pip install face-recognition-models or set identity.weights_path"
        )
    cache_file = None
    if cache_dir != "":
        cache_file = Path(cache_dir or default_cache_dir()) / f"dlib_resnet_{_sha256(path)[:16]}.pt"
    if cache_file is not None and cache_file.is_file():
        try:
            cached = torch.load(cache_file, map_location="cpu", weights_only=True)
            if cached.get("format") == CACHE_FORMAT_VERSION:
                model = DlibResNet.from_architecture(cached["architecture"])
                model.load_state_dict(cached["state_dict"])
                model.mean_rgb.copy_(torch.tensor(cached["mean_rgb"]))
                return model.eval().requires_grad_(False)
        except Exception:  # noqa: BLE001 - any unreadable cache (truncated, foreign, old) is rebuilt below
            pass
    model = DlibResNet.from_layers(read_dlib_network(path))
    if cache_file is not None:
        _save_atomic(
            {
                "format": CACHE_FORMAT_VERSION,
                "source": path.name,
                "architecture": model.architecture(),
                "mean_rgb": model.mean_rgb.tolist(),
                "state_dict": model.state_dict(),
            },
            cache_file,
        )
    return model.eval().requires_grad_(False)
