"""notebooks/pipeline.ipynb runs from top to bottom (in a temporary work dir) and shows its images."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "pipeline.ipynb"


def test_pipeline_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKONE_WORK_DIR", str(tmp_path / "work"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}
    ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == 5  # sample grid, model.png, the yaw edit, conditional samples, the re-enactment strip
    text = "".join(output.get("text", "") for output in outputs)
    assert "true yaw change (degrees) for a requested +20" in text
    assert "reenact: 8 frames" in text
    assert (tmp_path / "work" / "samples").is_dir() and (tmp_path / "work" / "regressor").is_dir()
