"""The overview in a real browser (AppTest cannot click a chart or measure text): a click on a
head opens the attention page at that layer and head; in projector mode, on a 1280×800 screen,
every text label of the chart is >= 14 px and no two labels overlap, for the bundled GPT-2-style
model, a tiny rotary (Llama) checkpoint and a model of GPT-2 small's layout (12 layers × 12
heads; narrower vectors, which the chart never shows as columns, keep the test fast).
Screenshots go to ``artifacts/screenshots/overview-*.png``.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest

from tests import test_browser as tb
from tests.test_browser import SHOTS, Tab

chromium, server, browser, tab = tb.chromium, tb.server, tb.browser, tb.tab  # its fixtures (one server here)

PROMPT = "ROMEO:\nBut, soft! what light through yonder window breaks? It is the east, and Juliet is the sun."
SCREEN = {"width": 1280, "height": 800}

# Every text node of the first chart: its font size and its box on screen.
TEXTS = """() => {
    const gd = document.querySelector('.js-plotly-plot');
    return [...gd.querySelectorAll('svg text')].filter(t => t.textContent.trim() && t.getBBox().width > 0)
        .map(t => { const r = t.getBoundingClientRect();
                    return {text: t.textContent, px: parseFloat(getComputedStyle(t).fontSize),
                            x0: r.left, y0: r.top, x1: r.right, y1: r.bottom}; });
}"""

# The pixel centre of point ``i`` of the trace named ``name`` (Plotly's own axis maps).
POINT = """([name, i]) => {
    const gd = document.querySelector('.js-plotly-plot');
    const n = gd.data.findIndex(d => d.name === name), d = gd.data[n], L = gd._fullLayout;
    const xa = L[(d.xaxis || 'x').replace('x', 'xaxis')], ya = L[(d.yaxis || 'y').replace('y', 'yaxis')];
    const box = gd.getBoundingClientRect();
    return {x: box.left + xa._offset + xa.l2p(d.x[i]), y: box.top + ya._offset + ya.l2p(d.y[i]),
            layer: d.customdata[i][1], head: d.customdata[i][2]};
}"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    pytest.importorskip("transformers")
    import torch
    import transformers

    from tests.hf_families import make_family_model

    root = tmp_path_factory.mktemp("overview-models")
    make_family_model("llama", root / "llama")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=12, n_head=12, n_embd=192, n_positions=256)  # GPT-2 small: 12 × 12
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(root / "gpt2-12")
    return {"bundled": "bundled:gpt2-style", "llama": str(root / "llama"), "gpt2-12": str(root / "gpt2-12")}


def _open(tab: Tab, spec: str, projector: bool = True) -> None:
    tab.page.set_viewport_size(SCREEN)
    tab.open(f"Overview?model={quote(spec, safe='')}&prompt={quote(PROMPT)}&projector={int(projector)}")
    assert tab.wait_charts() >= 1


def _overlaps(boxes: list[dict]) -> list[tuple[str, str]]:
    eps = 0.5  # touching boxes (rounding) do not count
    bad = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if (
                a["x0"] + eps < b["x1"]
                and b["x0"] + eps < a["x1"]
                and a["y0"] + eps < b["y1"]
                and b["y0"] + eps < a["y1"]
            ):
                bad.append((a["text"], b["text"]))
    return bad


@pytest.mark.parametrize("name", ["bundled", "llama", "gpt2-12"])
def test_labels_are_large_and_do_not_overlap_in_projector_mode(tab, folders, name):
    _open(tab, folders[name])
    tab.page.wait_for_timeout(300)
    texts = tab.page.evaluate(TEXTS)
    assert len(texts) > 20, texts
    small = [(t["text"], t["px"]) for t in texts if t["px"] < 14]
    assert not small, f"{name}: labels under 14 px: {small}"
    assert not _overlaps(texts), f"{name}: overlapping labels: {_overlaps(texts)}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SHOTS / f"overview-{name}-1280x800.png"))  # what a projector shows first
    tab.screenshot(f"overview-{name}")  # the whole page
    tab.assert_clean()


def test_clicking_a_head_opens_the_attention_page_at_that_head(tab):
    _open(tab, "bundled:gpt2-style", projector=False)
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot("overview-page")
    target = tab.page.evaluate(POINT, ["heads", 3 * 4 + 2])  # layer 3, head 2 (4 heads per layer)
    assert (target["layer"], target["head"]) == (3, 2)
    tab.page.mouse.click(target["x"], target["y"])
    tab.page.wait_for_function("() => location.pathname.endsWith('/Attention')")
    tab.wait_idle()
    tab.wait_charts()
    assert urlsplit(tab.page.url).path.endswith("/Attention")
    assert (tab.query()["attn_layer"], tab.query()["attn_head"]) == ("3", "2")
    assert (tab.slider("Layer").input_value(), tab.slider("Head").input_value()) == ("3", "2")
    tab.wait_title("Layer 3, head 2")
    tab.assert_clean()


def test_next_token_in_the_browser(tab):
    _open(tab, "bundled:gpt2-style", projector=False)
    for _ in range(3):
        tab.page.get_by_role("button", name="Next token").click()
        tab.wait_idle()
    tab.wait_charts()
    assert len(tab.query()["ov_generated"].split(",")) == 3
    assert tab.page.locator(".js-plotly-plot").count() == 2  # the overview and the attention timeline
    tab.screenshot("overview-generation")
    tab.assert_clean()


@pytest.mark.parametrize("projector", [False, True])
def test_the_home_page_opens_on_the_overview(tab, projector):
    tab.page.set_viewport_size(SCREEN)
    tab.open(f"?projector={int(projector)}")
    tab.wait_charts()
    box = tab.page.locator('[data-testid="stPlotlyChart"]').first.bounding_box()
    if projector:  # larger page text above it: the chart starts on the first screen and fits one
        assert box["y"] < SCREEN["height"] and box["height"] <= SCREEN["height"], box
    else:  # the whole overview is on the first screen
        assert box["y"] + box["height"] <= SCREEN["height"], box
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SHOTS / f"home-1280x800{'-projector' * projector}.png"))
    tab.assert_clean()
