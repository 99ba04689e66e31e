"""Overview: the whole GPT at a glance for the prompt, and generation watched token by token."""

from gptviz import ui
from gptviz.ui.overview import overview_section

ctx = ui.page(
    "Overview · the whole GPT at a glance",
    "Your prompt's tokens are the columns; the stages of the model are the rows, top to bottom: each token's "
    "id, its embedding, every layer (where attention lets the selected token read earlier ones and the "
    "feed-forward network works on each token alone), the final norm, and the next-token probabilities. "
    "Press **Next token** to watch the model write, one token at a time.",
)
overview_section(ctx)
