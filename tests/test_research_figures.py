"""The research figures: tokens on the axes (escaped), the raw metric in the hover, the
coordinates a click needs in customdata, the strongest path drawn on top."""

from __future__ import annotations

import json

import numpy as np
import plotly.io as pio
from conftest import tiny_model

from gptviz import figures
from gptviz.analysis import attribution as at
from gptviz.analysis import flow as fl
from gptviz.analysis import patching as pt

CLEAN = [464, 3797, 290, 1757, 1816, 284]
CORRUPT = [464, 3797, 290, 4502, 1816, 284]
TOKENS = ["<b>The</b>", " $x$", " and", " John", " went", " to"]


def _json(fig) -> str:
    return pio.to_json(fig, validate=False)


def test_patching_heatmaps_carry_tokens_raw_metric_and_click_coordinates():
    model = tiny_model("gpt2")
    for kind in pt.KINDS:
        r = pt.patch(model, CLEAN, CORRUPT, kind)
        fig = figures.patching_heatmap(r, TOKENS)
        spec = _json(fig)
        assert "<b>The</b>" not in spec and "&lt;b&gt;" in spec or kind == "head"
        assert "metric after patch" in fig.data[0].hovertemplate
        cd = np.asarray(fig.data[0].customdata)
        assert cd.shape[-1] == 4
        np.testing.assert_allclose(np.sort(cd[..., 3].ravel()), np.sort(r.raw.ravel()))
        cell = figures.clicked_cell({"customdata": list(cd[1, 2])})
        assert cell[0] == int(cd[1, 2, 0])
    one = figures.patching_heatmap(pt.patch(model, CLEAN, CORRUPT, "head_pos"), TOKENS, layer=1)
    assert np.asarray(one.data[0].z).shape == (4, 6) and list(one.data[0].y)[0] == "1.0"
    exact, approx = pt.patch(model, CLEAN, CORRUPT, "head"), pt.attribution_patching(model, CLEAN, CORRUPT, "head")
    fig = figures.patching_agreement(exact, approx, pt.agreement(exact, approx))
    assert "r = " in fig.layout.title.text and len(fig.data[1].x) == 8


def test_flow_graph_draws_edges_path_and_clickable_midpoints():
    model = tiny_model("gpt2")
    g = fl.information_flow(model, CLEAN)
    edges, path = g.graph(-1, 0.02), g.strongest_path(-1)
    fig = figures.flow_graph(edges, TOKENS, 2, path)
    mids = fig.data[-2]
    assert len(mids.customdata) == len(edges)
    e = figures.clicked_edge({"customdata": mids.customdata[0]})
    assert e["kind"] in ("head", "resid", "mlp") and 0 <= e["layer"] < 2
    assert any(t.name == "strongest path" for t in fig.data)
    assert "&lt;b&gt;" in _json(fig) and "<b>The</b>" not in json.dumps(list(mids.hovertext))


def test_attribution_figures():
    model = tiny_model("gpt2")
    a = at.gradient_x_input(model, CLEAN, 1110)
    chips = figures.attribution_tokens(a, TOKENS, per_row=4)
    z = np.asarray(chips.data[0].z, dtype=float)
    assert z.shape == (2, 4) and np.isnan(z[1, 2:]).all()
    np.testing.assert_allclose(z.ravel()[:6], a.scores)
    bars = figures.attribution_bars(a, TOKENS)
    np.testing.assert_allclose(bars.data[0].y, a.scores)
    assert "&#36;x&#36;" in _json(bars)
