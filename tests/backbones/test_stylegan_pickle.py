"""NVIDIA-style network pickles are read as data: weights come out, embedded code never runs.

The test writes pickles with the structure of NVIDIA's `torch_utils.persistence` records (a call
`torch_utils.persistence._reconstruct_persistent_obj(meta)` per module, meta = {type, version,
module_src, class_name, state}; tensors pickled by torch itself; `dnnlib.util.EasyDict` kwargs).
The embedded `module_src` creates a marker file when executed, as NVIDIA's loader would execute it.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from test_stylegan_reference import TOLERANCE, generator_from_fixture, load_fixture, max_abs_error

from backbones.stylegan import UnsafePickleError, load_stylegan, read_network_pickle
from backbones.stylegan.safe_pickle import PersistentRecord
from common.errors import UserError


def payload_source(marker: Path) -> str:
    """Module source that, if executed, proves it by creating `marker`."""
    return f"open({str(marker)!r}, 'w').write('executed')\nclass Generator:\n    pass\n"


class FakeNvidiaModules:
    """Installs `torch_utils.persistence` and `dnnlib.util` stand-ins in sys.modules so that pickle
    writes references to NVIDIA's names. Their reconstruct function executes `module_src`, as
    NVIDIA's does: a plain `pickle.load` of the files written here runs the payload."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        persistence = types.ModuleType("torch_utils.persistence")

        def _reconstruct_persistent_obj(meta):
            exec(compile(meta["module_src"], "<persistent module>", "exec"), {})
            return meta["state"]

        _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
        _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
        persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
        util = types.ModuleType("dnnlib.util")
        easy_dict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
        util.EasyDict = easy_dict
        for name, module in [
            ("torch_utils", types.ModuleType("torch_utils")),
            ("torch_utils.persistence", persistence),
            ("dnnlib", types.ModuleType("dnnlib")),
            ("dnnlib.util", util),
        ]:
            monkeypatch.setitem(sys.modules, name, module)
        sys.modules["torch_utils"].persistence = persistence
        sys.modules["dnnlib"].util = util
        self.reconstruct = _reconstruct_persistent_obj
        self.EasyDict = easy_dict


class Persistent:
    """Pickles as NVIDIA's persistent modules do: `_reconstruct_persistent_obj(meta)`."""

    def __init__(self, reconstruct, meta: dict):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def module_record(fakes: FakeNvidiaModules, module: torch.nn.Module, source: str, init_kwargs=None) -> Persistent:
    """NVIDIA-shaped record of `module` and (recursively) its children: the state is a
    torch.nn.Module __dict__ with parameters, buffers, hooks, children and constructor kwargs."""
    children = collections.OrderedDict(
        (name, module_record(fakes, child, source)) for name, child in module._modules.items()
    )
    state = {
        "training": False,
        "_parameters": collections.OrderedDict(
            (k, torch.nn.Parameter(v.detach().clone(), requires_grad=False)) for k, v in module._parameters.items()
        ),
        "_buffers": collections.OrderedDict(
            (k, None if v is None else v.detach().clone()) for k, v in module._buffers.items()
        ),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_forward_pre_hooks": collections.OrderedDict(),
        "_state_dict_hooks": collections.OrderedDict(),
        "_load_state_dict_pre_hooks": collections.OrderedDict(),
        "_modules": children,
        "_init_args": (),
        "_init_kwargs": fakes.EasyDict(init_kwargs or {}),
        "in_size": np.broadcast_to(np.asarray(36), [2]),
        "sampling_rate": np.float64(16.0),
        "activation": "lrelu",
        "padding": [1, 2, 1, 2],
    }
    meta = dict(type="class", version=6, module_src=source, class_name=type(module).__name__, state=state)
    return Persistent(fakes.reconstruct, meta)


def nvidia_network_pickle(fakes: FakeNvidiaModules, fixture_name: str, path: Path, marker: Path) -> Path:
    """Write a network pickle {G, D, G_ema, augment_pipe, training_set_kwargs} for a fixture."""
    fixture = load_fixture(fixture_name)
    generator = generator_from_fixture(fixture)
    init_kwargs = json.loads(str(fixture["init_kwargs_json"]))
    init_kwargs["mapping_kwargs"] = fakes.EasyDict(init_kwargs["mapping_kwargs"])
    source = payload_source(marker)
    g_ema = module_record(fakes, generator, source, init_kwargs)
    scrambled = generator_from_fixture(fixture)
    with torch.no_grad():
        for tensor in scrambled.parameters():
            tensor.zero_()
    g_training = module_record(fakes, scrambled, source, init_kwargs)
    discriminator = module_record(fakes, torch.nn.Linear(4, 1), source, {"c_dim": 0})
    snapshot = {
        "training_set_kwargs": fakes.EasyDict(path="ffhq.zip", resolution=32, xflip=True),
        "G": g_training,
        "D": discriminator,
        "G_ema": g_ema,
        "augment_pipe": None,
    }
    with open(path, "wb") as handle:
        pickle.dump(snapshot, handle, protocol=4)
    return path


@pytest.mark.parametrize("fixture_name", ["sg2_tiny.npz", "sg3t_tiny.npz"])
def test_loads_weights_from_nvidia_pickle_without_running_its_code(tmp_path, monkeypatch, fixture_name):
    marker = tmp_path / "payload_ran.txt"
    fakes = FakeNvidiaModules(monkeypatch)
    path = nvidia_network_pickle(fakes, fixture_name, tmp_path / "network.pkl", marker)

    # The payload is live: the ordinary unpickler (with NVIDIA's modules importable) executes it.
    with open(path, "rb") as handle:
        pickle.load(handle)
    assert marker.read_text() == "executed"
    marker.unlink()

    monkeypatch.undo()  # NVIDIA's modules are not importable for our loader
    assert "torch_utils.persistence" not in sys.modules
    generator = load_stylegan(path)
    assert not marker.exists()
    assert "torch_utils.persistence" not in sys.modules and "dnnlib.util" not in sys.modules

    fixture = load_fixture(fixture_name)
    with torch.no_grad():
        ws = generator.mapping(torch.from_numpy(fixture["z"]), float(fixture["truncation_psi"]))
        images = generator.synthesis(ws)
    assert max_abs_error(ws, fixture["ws"]) <= TOLERANCE
    assert max_abs_error(images, fixture["img"]) <= TOLERANCE


def test_records_expose_kwargs_and_weights_as_data(tmp_path, monkeypatch):
    marker = tmp_path / "payload_ran.txt"
    fakes = FakeNvidiaModules(monkeypatch)
    path = nvidia_network_pickle(fakes, "sg2_tiny.npz", tmp_path / "network.pkl", marker)
    monkeypatch.undo()
    data = read_network_pickle(path)
    assert not marker.exists()
    assert set(data) == {"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"}
    record = data["G_ema"]
    assert isinstance(record, PersistentRecord) and record.class_name == "StyleGAN2Generator"
    assert record.init_kwargs["mapping_kwargs"] == {"num_layers": 2}
    assert type(record.init_kwargs["mapping_kwargs"]) is dict
    assert len(record.module_src_sha256) == 64
    state = record.state_dict()
    fixture = load_fixture("sg2_tiny.npz")
    assert set(state) == {key.removeprefix("state/") for key in fixture if key.startswith("state/")}
    assert torch.equal(state["mapping.fc0.weight"], torch.from_numpy(fixture["state/mapping.fc0.weight"]))
    assert float(data["G"].state_dict()["mapping.fc0.weight"].abs().max()) == 0.0  # G_ema differs from G


class CallsGlobal:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize(
    "function, args, refused",
    [
        (os.system, ("echo hacked",), "system"),
        (eval, ("1 + 1",), "builtins.eval"),
        (torch.load, ("model.pt",), "torch.serialization.load"),
    ],
)
def test_refuses_any_other_global(tmp_path, function, args, refused):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": CallsGlobal(function, *args)}))
    with pytest.raises(UnsafePickleError, match=rf"refusing to load \S*{refused}"):
        load_stylegan(path)


def test_refuses_object_arrays_and_persistent_ids(tmp_path):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"G_ema": np.array([{"a": 1}], dtype=object)}))
    with pytest.raises(UnsafePickleError, match="numpy arrays of Python objects"):
        read_network_pickle(path)

    class WithPersistentIds(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage" if isinstance(obj, str) and obj == "x" else None

    with open(tmp_path / "pid.pkl", "wb") as handle:
        WithPersistentIds(handle).dump({"G_ema": "x"})
    with pytest.raises(UnsafePickleError, match="persistent ids"):
        read_network_pickle(tmp_path / "pid.pkl")


def test_refuses_malformed_records(tmp_path, monkeypatch):
    fakes = FakeNvidiaModules(monkeypatch)
    path = tmp_path / "bad_record.pkl"
    meta = dict(type="function", version=6, module_src="", class_name="f", state={})
    path.write_bytes(pickle.dumps({"G_ema": Persistent(fakes.reconstruct, meta)}))
    monkeypatch.undo()
    with pytest.raises(UnsafePickleError, match="unexpected persistent record"):
        read_network_pickle(path)


def test_corrupt_or_foreign_files_give_one_line_errors(tmp_path):
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x04this is not a pickle")
    with pytest.raises(UserError, match="not a readable network pickle"):
        load_stylegan(garbage)
    no_generator = tmp_path / "plain.pkl"
    no_generator.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(UserError, match="holds no G_ema network"):
        load_stylegan(no_generator)
