"""Reader for dlib's binary serialization of a DNN (``dlib/serialize.h``, ``dlib/dnn/*.h``).

The format, as dlib writes it (our own reading of dlib's sources, no dlib code involved):
- integers: one control byte (bit 7 = negative, low 4 bits = number of payload bytes), then the
  magnitude in that many little-endian bytes;
- floats (outside tensors): a mantissa (int64) and an exponent (int16) as above, value m * 2**e;
  exponents 32000/32001/32002 mean +inf/-inf/NaN;
- strings: a length integer then the bytes; bools: the characters '1' / '0';
- tensors: version (1: elements as dlib floats; 2: little-endian float32), then num_samples,
  k, nr, nc; alias tensors: version 1 and the four sizes only.
- networks nest from the output inward: ``add_loss_layer`` (version 1, loss details, subnet),
  ``add_layer`` (version 2: subnet, details, 3 bools, 3 tensors), ``add_tag_layer`` and
  ``add_skip_layer`` (version 1, subnet, nothing after), and the ``add_layer`` that holds the
  input layer (version 2 or 3: input layer, details, 3 bools, 3 tensors, [expansion factor]).

`read_dlib_network(path)` returns the layers in order from the input to the loss, each a
`DlibLayer(kind, values)` with kind one of "input_rgb_image_sized", "con", "affine", "relu",
"max_pool", "avg_pool", "add_prev", "fc", "tag_or_skip", "loss_metric". Tags and skips are
written identically, so the reader cannot tell them apart; the network definition that
consumes the list knows where each one is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError

_FLOAT_SPECIAL = {32000: np.inf, 32001: -np.inf, 32002: np.nan}


@dataclasses.dataclass
class DlibLayer:
    """One layer of a dlib network: `kind` and its serialized fields (arrays are float32)."""

    kind: str
    values: dict[str, Any]


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> UserError:
        return UserError(
            f"{self.source} is not a dlib network file as expected ({what} at byte {self.pos}); "
            "use dlib_face_recognition_resnet_model_v1.dat from face-recognition-models"
        )

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise self.fail("file ends early")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte {control:#x}")
        value = int.from_bytes(self.take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if exponent in _FLOAT_SPECIAL:
            return float(_FLOAT_SPECIAL[exponent])
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        length = self.integer()
        if not 0 <= length < 1 << 20:
            raise self.fail(f"bad string length {length}")
        return self.take(length).decode("latin-1")

    def boolean(self) -> bool:
        char = self.take(1)
        if char not in (b"0", b"1"):
            raise self.fail("bad bool")
        return char == b"1"

    def tensor(self) -> np.ndarray:
        version = self.integer()
        shape = tuple(self.integer() for _ in range(4))
        if any(size < 0 for size in shape):
            raise self.fail(f"negative tensor size {shape}")
        count = int(np.prod(shape))
        if version == 2:
            values = np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)
        elif version == 1:
            values = np.array([self.real() for _ in range(count)], dtype=np.float32)
        else:
            raise self.fail(f"unknown tensor version {version}")
        return values.reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        if self.integer() != 1:
            raise self.fail("unknown alias_tensor version")
        return tuple(self.integer() for _ in range(4))  # type: ignore[return-value]


def _read_details(reader: _Reader) -> DlibLayer:
    """Layer details: a version string, then fields that depend on it."""
    version = reader.string()
    if version == "con_4":
        params = reader.tensor()
        fields = {
            name: reader.integer()
            for name in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        }
        fields["filters"] = reader.alias_tensor()
        fields["biases"] = reader.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            reader.real()
        return DlibLayer("con", {"params": params, **fields})
    if version == "affine_":
        params = reader.tensor()
        gamma, beta = reader.alias_tensor(), reader.alias_tensor()
        return DlibLayer("affine", {"params": params, "gamma": gamma, "beta": beta, "mode": reader.integer()})
    if version in ("bn_con2", "bn_fc2"):
        return _read_batch_norm_as_affine(reader, version)
    if version in ("relu_", "add_prev_"):
        return DlibLayer(version.rstrip("_"), {})
    if version in ("max_pool_2", "avg_pool_2"):
        fields = {name: reader.integer() for name in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}
        return DlibLayer(version[:-2], fields)
    if version == "fc_2":
        num_outputs, num_inputs = reader.integer(), reader.integer()
        params = reader.tensor()
        weights, biases = reader.alias_tensor(), reader.alias_tensor()
        bias_mode = reader.integer()
        for _ in range(4):
            reader.real()
        return DlibLayer(
            "fc",
            {
                "num_outputs": num_outputs,
                "num_inputs": num_inputs,
                "params": params,
                "weights": weights,
                "biases": biases,
                "has_bias": bias_mode == 0,
            },
        )
    raise reader.fail(f"unsupported layer type {version!r}")


def _read_batch_norm_as_affine(reader: _Reader, version: str) -> DlibLayer:
    """A training-time bn_ layer, folded into the affine_ layer dlib uses at inference."""
    params = reader.tensor()
    gamma, beta = reader.alias_tensor(), reader.alias_tensor()
    for _ in range(2):  # batch means and inverse standard deviations
        reader.tensor()
    running_means, running_variances = reader.tensor().ravel(), reader.tensor().ravel()
    reader.integer()  # num_updates
    reader.integer()  # running_stats_window_size
    for _ in range(4):
        reader.real()
    eps = reader.real()
    num_gamma = int(np.prod(gamma))
    flat = params.ravel().astype(np.float64)
    scale = flat[:num_gamma] / np.sqrt(running_variances + eps)
    shift = flat[num_gamma : 2 * num_gamma] - scale * running_means
    folded = np.concatenate([scale, shift]).astype(np.float32).reshape(-1, 1, 1, 1)
    return DlibLayer(
        "affine", {"params": folded, "gamma": gamma, "beta": beta, "mode": 0 if version == "bn_con2" else 1}
    )


def _read_input(reader: _Reader) -> DlibLayer:
    version = reader.string()
    if version != "input_rgb_image_sized":
        raise reader.fail(f"unsupported input layer {version!r}")
    mean_rgb = [reader.real() for _ in range(3)]
    rows, cols = reader.integer(), reader.integer()
    return DlibLayer("input_rgb_image_sized", {"mean_rgb": mean_rgb, "rows": rows, "cols": cols})


def _read_layer_state(reader: _Reader, extra_tensor_and_factor: bool) -> None:
    """Bookkeeping after each layer's details (setup flags, cached tensors); not needed."""
    for _ in range(3):
        reader.boolean()
    for _ in range(3):
        reader.tensor()
    if extra_tensor_and_factor:
        reader.integer()


def parse_dlib_network(data: bytes, source: str = "network file") -> list[DlibLayer]:
    """Bytes of a serialized dlib `loss_*<...>` network -> layers from input to loss (see module doc)."""
    reader = _Reader(data, source)
    if reader.integer() != 1:
        raise reader.fail("unknown add_loss_layer version")
    loss_version = reader.string()
    if loss_version != "loss_metric_2":
        raise reader.fail(f"unsupported loss layer {loss_version!r}")
    loss = DlibLayer("loss_metric", {"margin": reader.real(), "distance_threshold": reader.real()})
    wrappers: list[int] = []
    while True:
        version = reader.integer()
        if version in (2, 3) and _peek_string(reader) == "input_rgb_image_sized":
            break
        if version not in (1, 2):
            raise reader.fail(f"unexpected layer version {version}")
        wrappers.append(version)
    layers = [_read_input(reader), _read_details(reader)]
    _read_layer_state(reader, extra_tensor_and_factor=version == 3)
    for version in reversed(wrappers):
        if version == 1:
            layers.append(DlibLayer("tag_or_skip", {}))
        else:
            layers.append(_read_details(reader))
            _read_layer_state(reader, extra_tensor_and_factor=False)
    if reader.pos != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.pos} unread bytes at the end")
    layers.append(loss)
    return layers


def _peek_string(reader: _Reader) -> str | None:
    start = reader.pos
    try:
        return reader.string()
    except UserError:
        return None
    finally:
        reader.pos = start


def read_dlib_network(path: str | Path) -> list[DlibLayer]:
    """Read a dlib network file -> layers from input to loss; UserError if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"dlib face recognition weights not found at {path}; install face-recognition-models "
            "(pip install face-recognition-models) or pass the path of dlib_face_recognition_resnet_model_v1.dat"
        )
    return parse_dlib_network(path.read_bytes(), source=str(path))


__all__ = ["DlibLayer", "parse_dlib_network", "read_dlib_network"]
