"""examples/research.ipynb runs top to bottom and draws each research figure."""

from __future__ import annotations

import nbformat
from apptest_utils import ROOT
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = ROOT / "examples" / "research.ipynb"


def test_research_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    source = "\n".join(c.source for c in code)
    for call in ("patching.patch(", "attribution_patching(", "flow.information_flow(", "integrated_gradients("):
        assert call in source


def test_research_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    plots = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plots) == 4
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) >= 3  # result.frame(), the path, ig.frame() as DataFrames
