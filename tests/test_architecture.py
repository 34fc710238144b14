"""The package boundaries of docs/ARCHITECTURE.md, checked on the import statements of the source tree."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "sampling", "nrsfm", "backbones", "regressor", "editing")
ORCHESTRATOR = "editing.pipeline"  # builds the missing stages by calling their entry points' run(cfg)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports (``from a import b`` counts as a and as a.b)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_entry_point(path: Path) -> bool:
    lines = path.read_text().splitlines()
    return any(line.startswith("@hydra.main") for line in lines) and 'if __name__ == "__main__":' in lines


SOURCES = {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
ENTRY_POINTS = {name for name, path in SOURCES.items() if is_entry_point(path)}


def test_the_stages_have_their_entry_points():
    assert {
        "sampling.sample",
        "sampling.merge",
        "nrsfm.fit",
        "regressor.train",
        "editing.edit",
        "editing.transfer",
        "editing.sample",
        "editing.evaluate",
    } <= ENTRY_POINTS


@pytest.mark.parametrize("name", sorted(name for name in SOURCES if name.startswith("nrsfm.")))
def test_nrsfm_is_geometry_without_backbones_or_frameworks(name):
    imports = imported_modules(SOURCES[name])
    assert not {module for module in imports if module.split(".")[0] in ("backbones", "pytorch_lightning", "lightning")}
    if name != "nrsfm.fit":
        assert not {module for module in imports if module.split(".")[0] in ("hydra", "omegaconf", "sampling")}


@pytest.mark.parametrize("name", sorted(set(SOURCES) - ENTRY_POINTS - {ORCHESTRATOR}))
def test_library_modules_import_no_entry_point(name):
    assert not imported_modules(SOURCES[name]) & ENTRY_POINTS


def test_common_imports_no_pipeline_stage():
    for name in (name for name in SOURCES if name.startswith("common.")):
        assert not {module for module in imported_modules(SOURCES[name]) if module.split(".")[0] in PACKAGES[1:]}, name
