import pytest
import torch

from tinykws.checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from tinykws.cli import main
from tinykws.errors import TinyKWSError


def test_round_trip(tmp_path):
    path = tmp_path / "m.safetensors"
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(1, dtype=torch.int64)}
    save_checkpoint(path, tensors, {"labels": ["x"], "model": {"family": "f"}})
    loaded, meta = load_checkpoint(path)
    assert meta["labels"] == ["x"] and meta["model"] == {"family": "f"}
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])


@pytest.mark.parametrize("damage", ["truncate", "foreign", "empty"])
def test_damaged_files_are_one_line_errors(tmp_path, damage):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {"a": torch.zeros(1000)}, {"labels": []})
    data = path.read_bytes()
    damaged = {
        "truncate": data[: len(data) // 2],
        "foreign": b"\x89PNG" + b"x" * 100,
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(TinyKWSError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_cli_reports_a_truncated_checkpoint_without_traceback(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {"a": torch.zeros(1000)}, {"labels": []})
    path.write_bytes(path.read_bytes()[:300])
    clip = tmp_path / "c.wav"
    clip.write_bytes(b"")
    assert main(["predict", str(path), str(clip)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_plain_safetensors_without_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(path))
    with pytest.raises(TinyKWSError, match="without tinykws metadata"):
        load_checkpoint(path)


def test_optimizer_state_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, info = flatten_optimizer_state(opt.state_dict())
    fresh = torch.optim.Adam(model.parameters(), lr=0.1)
    fresh.load_state_dict(unflatten_optimizer_state(tensors, info))
    for a, b in zip(opt.state_dict()["state"].values(), fresh.state_dict()["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])
