"""Safe, clear loading: every bad checkpoint is one CheckpointError naming the file."""

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import gptviz
from gptviz.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from tests.conftest import tiny_model


def test_round_trip_of_our_format(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    loaded = gptviz.load_model(path)
    assert loaded.cfg == model.cfg
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="nope"):
        gptviz.load_model(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="no config.json"):
        gptviz.load_model(tmp_path)  # a folder that is not a checkpoint


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_safetensors(tmp_path, damage):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model(), path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(4096)}[damage])
    with pytest.raises(CheckpointError, match="m.safetensors"):
        load_checkpoint(path)


def test_wrong_shape_and_dtype_are_named(tmp_path):
    model = tiny_model()
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    from safetensors.torch import load_file

    state = load_file(str(path))
    meta = {"config": __import__("json").dumps(model.cfg.to_dict())}
    state["blocks.0.mlp.c_fc.weight"] = torch.zeros(3, 3)
    save_file(state, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"m.safetensors.*wrong shape.*c_fc"):
        load_checkpoint(path)
    state = load_file(str(tmp_path / "m.safetensors"))
    state["blocks.0.mlp.c_fc.weight"] = torch.zeros(model.cfg.d_mlp, model.cfg.d_model, dtype=torch.int32)
    save_file(state, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="not floating point"):
        load_checkpoint(path)


class Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2}')
    marker = tmp_path / "pwned"
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"wte.weight": Payload(str(marker))}, f, protocol=2)
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        gptviz.load_model(folder)
    assert not marker.exists()


def test_unsupported_or_oversized_config(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="model_type 'bert' is not supported; supported: gpt2 .*llama"):
        gptviz.load_model(tmp_path)
    # Llama's default sizes are Llama 2 7B's: refused by the memory budget before anything is built.
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(CheckpointError, match="B parameters need .* GB as float32, over"):
        gptviz.load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        gptviz.load_model(tmp_path)


def test_unknown_bundled_name():
    with pytest.raises(CheckpointError, match="bundled models are"):
        gptviz.load_model("bundled:nope")
