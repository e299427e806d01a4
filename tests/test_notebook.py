"""notebooks/batch_size_effect.ipynb runs top to bottom in a fresh kernel of this interpreter (a real CPU sweep)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "batch_size_effect.ipynb"


def test_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the notebook's outputs"


@pytest.mark.slow
def test_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    # A python3 kernel spec of this very interpreter, found before any other (JUPYTER_PATH comes first).
    jupyter = tmp_path / "jupyter"
    write_kernel_spec(jupyter / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    work = tmp_path / "work"
    monkeypatch.setenv("YOLO_BATCH_NOTEBOOK_DIR", str(work))  # the kernel inherits this environment

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # kept for a look after a failure

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"python {sys.executable}" in text  # the kernel ran this interpreter

    project = work / "sweep"
    with open(project / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["8", "16", "32", "auto-plus"]  # one row per batch
    decision = json.loads((project / "auto-plus" / "batch_decision.json").read_text())
    assert [int(r["batch"]) for r in rows] == [8, 16, 32, decision["batch"]]
    assert (project / "comparison.png").stat().st_size > 10_000
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the sample images, comparison.png and the per-epoch curves

    summary = text.split("What the numbers of this run say:", 1)
    assert len(summary) == 2, "the final summary was not printed"
    assert "Speed:" in summary[1] and "Memory:" in summary[1] and "Accuracy:" in summary[1]
    assert f"auto-plus picked batch {decision['batch']}" in summary[1]
