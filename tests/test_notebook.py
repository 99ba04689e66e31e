"""The notebook tour runs top to bottom, and a figure made in a notebook is the page's figure."""

from __future__ import annotations

import json

import nbformat
import plotly.io as pio
from apptest_utils import ROOT, assert_ok, figures, open_page
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

import gptviz

TOUR = ROOT / "examples" / "tour.ipynb"
PROMPT = "The cat sat on the mat. The dog sat on the rug. The cat sat on the"


def test_tour_is_committed_without_outputs():
    nb = nbformat.read(TOUR, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 6  # an introduction and one per stage
    source = "\n".join(c.source for c in code)
    assert 'gptviz.load_model("bundled:gpt2-style")' in source


def test_tour_runs_without_errors(tmp_path):
    """Execute every cell in a real kernel (cwd: the checkout); nbclient raises on the first error."""
    nb = nbformat.read(TOUR, as_version=4)
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    plots = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plots) >= 12  # every stage drew its figures
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) >= 4  # frame(), pattern_frame() and top_tokens() show as DataFrames


def _normal(spec: dict) -> dict:
    """Data and layout as plain JSON, the way Plotly writes them (typed arrays as base64)."""
    return json.loads(pio.to_json({"data": spec["data"], "layout": spec["layout"]}, validate=False))


def test_notebook_figure_equals_the_page_figure():
    layer, head = 1, 2
    at = open_page("4_Attention.py", prompt=PROMPT, attn_layer=str(layer), attn_head=str(head))
    assert_ok(at)
    on_page = figures(at)["attn_pattern"]

    model = gptviz.load_model("bundled:gpt2-style")  # the page's default model
    trace = gptviz.run(model, PROMPT)
    fig = gptviz.figures.attention_pattern(trace, layer=layer, head=head)

    mine, theirs = _normal(fig.to_plotly_json()), _normal(on_page)
    assert mine["layout"] == theirs["layout"]
    assert mine["data"] == theirs["data"]
    assert mine["layout"]["title"]["text"].startswith(f"Layer {layer}, head {head}")
