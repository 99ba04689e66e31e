"""Overview: the whole GPT at a glance for the prompt, and generation watched token by token."""

from gptviz import ui
from gptviz.ui.overview import overview_section

ctx = ui.page(
    "Overview: the whole GPT",
    "Columns: your tokens. Rows: the model's stages, top to bottom, from ids to next-token odds. "
    "Click a head, a layer or a stage to open its page; press **Next token** to watch the model write.",
)
overview_section(ctx)
