"""The app's pages, listed once: the home page's links, the sidebar and the lesson's "explore"
links all read this list. A new page is a file in ``pages/`` plus one ``Page`` here.

No Streamlit here (the lesson logic imports it too); ``gptviz.ui.sidebar`` draws it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    path: str  # the script, relative to the app's folder: what st.page_link / st.switch_page take
    title: str  # the label in the sidebar and on the home page
    icon: str  # a Material icon (":material/…:")
    section: str  # the sidebar heading it sits under
    blurb: str  # one line for the home page


HOME = Page("app.py", "Home", ":material/home:", "", "what a GPT does, the pipeline at a glance")
PIPELINE, CLASSROOM, RESEARCH = "The pipeline", "Classroom", "Research"
SECTIONS = (PIPELINE, CLASSROOM, RESEARCH)  # sidebar order; an empty section is not drawn

OVERVIEW = Page(
    "pages/0_Overview.py", "Overview", ":material/schema:", PIPELINE, "the whole GPT at a glance, token by token"
)
PAGES: tuple[Page, ...] = (
    OVERVIEW,
    Page("pages/1_Tokenization.py", "1 · Tokenization", ":material/text_fields:", PIPELINE, "text → token ids (BPE)"),
    Page("pages/2_Embeddings.py", "2 · Embeddings", ":material/scatter_plot:", PIPELINE, "ids → vectors"),
    Page(
        "pages/3_Positional_encoding.py",
        "3 · Positional encoding",
        ":material/pin_drop:",
        PIPELINE,
        "vectors → vectors that know their position",
    ),
    Page(
        "pages/4_Attention.py",
        "4a · Self-attention",
        ":material/visibility:",
        PIPELINE,
        "each token looks back at earlier ones",
    ),
    Page(
        "pages/5_Feed-forward_and_residual.py",
        "4b · Feed-forward & residual",
        ":material/account_tree:",
        PIPELINE,
        "each token is processed on its own",
    ),
    Page("pages/6_Output.py", "5 · Output", ":material/output:", PIPELINE, "scores → the next token"),
    Page("pages/7_Lesson.py", "Guided lesson", ":material/school:", CLASSROOM, "predict, then reveal"),
    Page("pages/8_Side_by_side.py", "Side by side", ":material/compare:", CLASSROOM, "two models, one prompt"),
    Page(
        "pages/9_Training_timeline.py",
        "Training timeline",
        ":material/timeline:",
        CLASSROOM,
        "from random to trained",
    ),
    Page(
        "pages/10_Activation_patching.py",
        "Activation patching",
        ":material/swap_horiz:",
        RESEARCH,
        "which activations carry the answer?",
    ),
    Page(
        "pages/11_Information_flow.py",
        "Information flow",
        ":material/hub:",
        RESEARCH,
        "which routes lead to the prediction?",
    ),
    Page("pages/12_Attribution.py", "Input attribution", ":material/highlight:", RESEARCH, "which tokens matter?"),
)


def page(path: str) -> Page:
    """The registered page of ``path`` (e.g. ``"pages/4_Attention.py"``)."""
    for p in (HOME, *PAGES):
        if p.path == path:
            return p
    raise KeyError(path)


def section(name: str) -> list[Page]:
    return [p for p in PAGES if p.section == name]
