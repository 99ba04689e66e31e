"""The training state: one ``state_dict`` shape, saved and resumed to the same continuation."""

import random

import torch
import torch.nn.functional as F

from gptviz.config import preset
from gptviz.train import TrainSpec, TrainState, new_state

SPEC = TrainSpec(name="t", preset="gpt2", lr=3e-3, ema=0.9, dropout=0.3)
CFG = preset("gpt2").replace(vocab_size=40, d_model=16, n_layer=1, n_head=2, d_mlp=32, n_ctx=8, dropout=0.3)


def steps(state: TrainState, n: int) -> None:
    """``n`` optimizer steps on batches from the state's own streams, dropout on (torch's generator)."""
    state.model.train()
    for _ in range(n):
        x = torch.randint(0, CFG.vocab_size, (4, CFG.n_ctx + 1), generator=state.gen)
        loss = F.cross_entropy(state.model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        state.opt.zero_grad(set_to_none=True)
        loss.backward()
        state.opt.step()
        state.step += 1
        state.history.append({"step": state.step, "train_loss": loss.item(), "pick": state.rng.random()})


def test_a_saved_state_resumes_to_the_same_continuation(tmp_path):
    a = new_state(SPEC, CFG)
    steps(a, 3)
    a.keep_if_best(1.5, a.model.state_dict())
    torch.save(a.state_dict(), tmp_path / "s.pt")
    steps(a, 3)
    b = new_state(SPEC, CFG)  # reseeds torch: only the loaded state can bring its streams back
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert b.step == 3 and b.best_val == 1.5 and len(b.history) == 3
    steps(b, 3)
    assert b.history == a.history  # same batches, same rng draws, same losses (dropout masks too)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    assert set(a.state_dict()) == set(b.state_dict())


def test_a_state_saved_before_the_rng_and_average_were_kept_still_loads(tmp_path):
    a = new_state(SPEC, CFG)
    steps(a, 2)
    old = {k: v for k, v in a.state_dict().items() if k not in ("rng", "torch_rng", "ema")}
    torch.save(old, tmp_path / "old.pt")
    b = new_state(SPEC, CFG)
    b.load_state_dict(torch.load(tmp_path / "old.pt", weights_only=True))
    assert b.step == 2 and b.rng.getstate() == random.Random(SPEC.seed).getstate()  # restarts from the seed
    assert b.ema is not None and torch.equal(b.ema["embed.weight"], new_state(SPEC, CFG).ema["embed.weight"])
    for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(x, y)


def test_a_rebuilt_step0_snapshot_equals_the_stored_one(tmp_path):
    """rebuild_step0 skips writing step 0; initial_weights rebuilds it from the card, bit for bit."""
    import dataclasses

    from gptviz.checkpoints import initial_weights, load_checkpoint
    from gptviz.train import train

    text = "ROMEO:\\nBut soft, what light through yonder window breaks?\\n\\nJULIET:\\nAy me.\\n" * 400
    (tmp_path / "corpus.txt").write_text(text)
    spec = dataclasses.replace(SPEC, vocab=300, d_model=16, n_layer=1, n_head=2, d_mlp=32, n_ctx=16, batch=4)
    spec = dataclasses.replace(spec, steps=2, eval_every=2, snapshots=[0], ema=0.0)
    stored = train(spec, tmp_path / "a", data=tmp_path / "corpus.txt", resume=False)
    rebuilt = train(
        dataclasses.replace(spec, rebuild_step0=True), tmp_path / "b", data=tmp_path / "corpus.txt", resume=False
    )
    assert stored["snapshots"] == ["step000000.safetensors"] and rebuilt["snapshots"] == []
    want = load_checkpoint(tmp_path / "a" / "t-snapshots" / "step000000.safetensors").state_dict()
    torch.manual_seed(123)  # the rebuild must not depend on (or move) the global RNG
    before = torch.random.get_rng_state()
    got = initial_weights(rebuilt).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
