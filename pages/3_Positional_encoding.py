"""Stage 3 — positional encoding: where each token is (added vectors, or rotary rotations)."""

import streamlit as st

from gptviz import figures, ui
from gptviz.analysis import position_similarity, positional_table
from gptviz.analysis import rotary as ra
from gptviz.figures import rotary as fr

ctx = ui.page(
    "3 · Positional encoding",
    "Attention by itself does not know word order: *dog bites man* and *man bites dog* would look "
    "the same. The seed (and the original Transformer) adds a **position vector** of fixed **sine and "
    "cosine waves** to every token's embedding before the first layer; GPT-2 **learns** one vector per "
    "position instead. Llama, Mistral, Qwen and Pythia add nothing: they **rotate** each query and key "
    "inside attention by an angle that grows with the position (rotary position embedding, RoPE).",
)


def rotary_page() -> None:
    """RoPE: no vector is added; the angles, one query turned, and the relative-position property."""
    t, cfg, P = ctx.trace, ctx.cfg, ctx.projector
    R, Dh, half = cfg.rot_dim, cfg.d_head, cfg.rot_dim // 2
    partial = (
        f" Only the first **{R} of the {Dh}** dimensions of each head rotate (partial rotary, as in GPT-NeoX / "
        f"Pythia): dimensions {R}–{Dh - 1} are never turned, so they carry no position at all."
        if R < Dh
        else ""
    )
    st.markdown(
        "This model's positions are **rotary**. There is **no position vector to add**: the token embedding "
        "enters the first layer as it is (the Embeddings page shows it). Instead, in every attention layer, each "
        f"query and key head (**{Dh}** numbers) is cut into **{half} pairs** of numbers, and each pair is turned "
        "like the hand of a clock by an angle **position × speed**. Every pair has its own speed: the first pairs "
        "spin fast, the last ones slowly."
        + partial
        + (
            " (In this model each query and key head is first RMS-normalized on its own, the q/k norm of Qwen3; "
            "the rotation comes after it.)"
            if cfg.qk_norm
            else ""
        )
    )
    st.subheader("1 · How far each pair turns at each position")
    n = ui.slider(
        "Positions shown", min(8, cfg.n_ctx), min(cfg.n_ctx, 4096), "pos_n", min(cfg.n_ctx, max(64, t.n_tokens))
    )
    angles = ra.rotary_angles(cfg, n)
    c1, c2 = st.columns([3, 2])
    with c1:
        ui.chart(fr.rotary_angle_heatmap(angles, projector=P), "rope_angles")
    c2.markdown(
        "Each column is one pair, each row one position; the colour is the pair's angle, wrapped round "
        "the circle (the scale is cyclic: 0° and 360° look the same).\n\n"
        f"Pair *i* turns by position × θ^(−2i/{R}) radians, with θ = **{cfg.rope_theta:,.0f}**"
        + (" (the slow pairs then slowed further by Llama 3's scaling, below)" if cfg.rope_scaling else "")
        + ". The **left** "
        "columns change colour at every row: they tell neighbouring tokens apart. The **right** columns "
        "barely change over the whole prompt: they tell *near* from *far*. Like the seconds, minutes and hour "
        "hands of a clock, together they fix the position."
    )
    last = angles.n_pairs - 1
    picks = sorted({0, min(1, last), last // 4, last // 2, last})
    c1, c2 = st.columns([3, 2])
    with c1:
        ui.chart(fr.rotary_angle_curves(angles, picks, projector=P), "rope_curves")
    with c2:
        ui.chart(fr.rotary_wavelengths(angles, cfg.n_ctx, projector=P), "rope_wavelengths")
    scaling = cfg.rope_scaling
    if scaling is not None:
        st.markdown(
            f"**Llama 3's scaling** is on: pairs whose wavelength is longer than "
            f"{scaling.original_max_position_embeddings / scaling.low_freq_factor:,.0f} positions (the original "
            f"context {scaling.original_max_position_embeddings:,} / {scaling.low_freq_factor:g}) turn "
            f"**{scaling.factor:g}× slower**, those shorter than "
            f"{scaling.original_max_position_embeddings / scaling.high_freq_factor:,.0f} keep their speed, and the "
            "band between is blended. The slow pairs then stay distinct over a much longer context (right chart: "
            "the dotted line is the rule without scaling)."
        )
    else:
        st.caption(
            "Right: how many positions each pair needs for one full turn. Pairs above the dashed line never "
            "complete a turn inside the context."
        )

    st.subheader("2 · One query, before and after its rotation")
    c = st.columns(4)
    layer = ui.slider("Layer", 0, cfg.n_layer - 1, "rope_layer", 0, where=c[0])
    head = ui.slider("Query head", 0, cfg.n_head - 1, "rope_head", 0, where=c[1])
    pos = ui.slider("Token position", 0, t.n_tokens - 1, "pos_token", min(3, t.n_tokens - 1), where=c[2])
    pair = ui.slider("Pair", 0, half - 1, "rope_pair", 0, where=c[3])
    rot = ra.query_pair(t, layer, head, pos, pair)
    c1, c2 = st.columns([3, 2])
    with c1:
        ui.chart(fr.rotary_pair_arrows(rot, t.tokens[pos], projector=P), "rope_arrows")
    i, j = rot.dims
    c2.markdown(
        f"The grey arrow is the pair (dimensions {i} and {j}) of the query that token **{pos}** computed in "
        f"layer {layer}, head {head} (`hook_q`); the blue arrow is the same pair after the rotation (`hook_rot_q`), "
        f"the one attention really uses. It turned by **{rot.pos} × {2 * 3.141592653589793 / rot.wavelength:.4f} = "
        f"{rot.angle:.3f} rad** ({rot.angle * 57.29577951308232:.0f}°), and its **length did not change**: a "
        "rotation only changes direction.\n\n"
        f"This pair turns once every **{rot.wavelength:,.1f}** positions. Move the position slider: the blue arrow "
        "goes round; move the pair slider right: it turns more slowly. Keys are turned by exactly the same rule."
    )

    st.subheader("3 · Why rotate? The score depends only on the distance")
    c = st.columns(2)
    qp = ui.slider("Query token", 0, t.n_tokens - 1, "rope_qpos", t.n_tokens - 1, where=c[0])
    kp = ui.slider("Key token", 0, t.n_tokens - 1, "rope_kpos", 0, where=c[1])
    span, (_, second) = ra.relative_span(cfg, t.n_tokens, qp - kp)
    rel = ra.relative_scores(t, layer, head, qp, kp, max_offset=span, starts=(0, second))
    c1, c2 = st.columns([3, 2])
    with c1:
        ui.chart(fr.relative_position_curves(rel, t.tokens[qp], t.tokens[kp], projector=P), "rope_relative")
    kh = head // (cfg.n_head // cfg.kv_heads)
    shared = (
        f" (this query head reads K/V head {kh}, shared with other query heads)" if cfg.kv_heads < cfg.n_head else ""
    )
    c2.markdown(
        f"Take the real query of token **{qp}** and the real key of token **{kp}**{shared}, before rotation, and "
        "pretend they sit at other positions: the key at position *n*, the query at *n* + offset. Turning both "
        "and taking their dot product gives the attention score for each offset.\n\n"
        f"The two curves (key at 0 and key at {second}) **lie on top of each other**: the score does not depend on "
        "*where* the two tokens are, only on *how far apart*. That is because turning q by *m*·speed and k by "
        "*n*·speed changes their dot product only through the difference (*m* − *n*)·speed, pair by pair. The "
        + (
            "star is the score the model actually computed for these two tokens in your prompt; it sits on the "
            f"curve at offset {qp - kp}."
            if qp >= kp
            else "key comes after the query here: the causal mask hides it, so there is no star for the real pair."
        )
    )
    ui.seed_note(
        "position_encodings = positional_encoding(seq_length, embed_dim)\nembeddings += position_encodings",
        "The seed *adds* sine/cosine waves to the embeddings. RoPE uses the same family of frequencies "
        "(θ^(−2i/d)), but as rotation angles of q and k inside every attention layer (`gptviz.model.rotate`), "
        "so nothing is added to the residual stream and a score depends only on relative position.",
    )


def added_page() -> None:
    t, cfg = ctx.trace, ctx.cfg
    kind = cfg.pos
    st.markdown(
        f"This model's positions are **{kind}** ({'fixed sine/cosine' if kind == 'sinusoidal' else 'learned in training'})."
    )
    n = ui.slider("Positions shown", min(8, cfg.n_ctx), cfg.n_ctx, "pos_n", min(cfg.n_ctx, max(64, t.n_tokens)))
    pos = positional_table(ctx.model, n)
    ui.chart(figures.positional_heatmap(pos, kind, projector=ctx.projector), "pos_heatmap")

    st.subheader("Dimensions as curves")
    default_dims = [d for d in (0, 1, 4, 5, 16) if d < cfg.d_model]
    placeholder = f"default: {', '.join(map(str, default_dims))}"
    dims = sorted(
        ui.multiselect("Dimensions", range(cfg.d_model), "pos_dims", max_selections=8, placeholder=placeholder)
    )
    dims = [d for d in dims if d < cfg.d_model] or default_dims
    ui.chart(
        figures.positional_curves(pos, dims, kind, projector=ctx.projector),
        "pos_curves",
        caption="Sinusoidal: low dimensions wiggle fast, high ones slowly, like the hands of a clock. "
        "Learned: whatever shapes training found useful, often smooth waves too.",
    )

    st.subheader("Which positions look alike?")
    ui.chart(
        figures.position_similarity_heatmap(position_similarity(pos), projector=ctx.projector),
        "pos_sim",
        caption="Neighbouring positions have similar vectors (the dark red band along the diagonal: red is similar, "
        "blue opposite): the model can tell near from far.",
    )

    st.subheader("Token + position = the first residual stream")
    p = ui.slider("Token position", 0, t.n_tokens - 1, "pos_token", min(1, t.n_tokens - 1))
    ui.chart(figures.embedding_plus_position(t, p, projector=ctx.projector), "pos_sum")

    ui.seed_note(
        "position_encodings = positional_encoding(seq_length, embed_dim)\nembeddings += position_encodings",
        "`gptviz.positional_encoding(seq_len, dim)` is exactly the seed's function. GPT-2 replaces it with a "
        "learned table `nn.Embedding(n_ctx, d_model)`, so its model cannot read past its context length (1,024).",
    )


if ctx.cfg.pos == "rotary":
    rotary_page()
else:
    added_page()
