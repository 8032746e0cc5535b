"""Training: every family trains, resume continues exactly, DDP runs with two processes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from support import tone_training_data

from tinykws.config import to_dict
from tinykws.data.augment import AugmentConfig
from tinykws.errors import TinyKWSError
from tinykws.models import MODEL_PRESETS, build_model, model_config
from tinykws.train.loop import TrainConfig, fit

# Each family with the front end of the study it comes from.
FAMILY_PRESETS = {
    "tinyconv": "micro",
    "dscnn_s": "mfcc",
    "commandnet": "bark",
    "cnn3": "cnn3",
    "bcresnet1": "logmel",
}


@pytest.fixture(scope="module")
def tone_data(tone_corpus):
    return tone_training_data(tone_corpus, "mfcc")


SMALL_DSCNN = {"preset": "dscnn_s", "width_multiplier": 0.5}


@pytest.mark.parametrize("preset", FAMILY_PRESETS)
def test_every_family_trains_one_epoch(preset, tone_corpus, tmp_path):
    assert preset in MODEL_PRESETS
    tone_data = tone_training_data(tone_corpus, FAMILY_PRESETS[preset])
    shape = tone_data.frontend.output_shape
    model = build_model(model_config(preset, 12, shape))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=32, augment=AugmentConfig(enabled=True))
    history = fit(model, tone_data, cfg, tmp_path)
    assert len(history["train_loss"]) == 1 and np.isfinite(history["train_loss"][0])
    changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed and (tmp_path / "best.safetensors").is_file()


def test_training_learns_the_tone_corpus(tone_data, tmp_path):
    torch.manual_seed(0)
    model = build_model(model_config("tinyconv", 12, tone_data.frontend.output_shape))
    cfg = TrainConfig(epochs=8, batch_size=8, augment=AugmentConfig(enabled=False))
    history = fit(model, tone_data, cfg, tmp_path)
    assert history["train_loss"][-1] < history["train_loss"][0] * 0.5
    assert history["train_accuracy"][-1] >= 0.8  # 12 classes: chance is ~0.08
    assert max(history["val_accuracy"]) >= 0.5
    from tinykws.checkpoint import load_checkpoint

    _, meta = load_checkpoint(tmp_path / "best.safetensors")  # what QAT fine-tunes with later
    assert meta["train"] == {
        "augment": to_dict(cfg.augment),
        "unknown_weight": 1.0,
        "class_weighted": True,
    }


def test_resumed_training_equals_uninterrupted_training(tone_data, tmp_path, monkeypatch):
    import tinykws.train.loop as train_module

    shape = tone_data.frontend.output_shape
    cfg = TrainConfig(epochs=3, batch_size=32, augment=AugmentConfig(enabled=False))

    def train(out):
        torch.manual_seed(0)
        model = build_model(model_config(SMALL_DSCNN, 12, shape))
        return fit(model, tone_data, cfg, out), model

    straight, straight_model = train(tmp_path / "straight")

    def stop_after_first_epoch(epoch, *args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_log_epoch", stop_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path / "resumed")
    resumed, resumed_model = train(tmp_path / "resumed")  # continues from last.safetensors
    assert len(resumed["train_loss"]) == 3
    np.testing.assert_allclose(resumed["train_loss"], straight["train_loss"], rtol=1e-6)
    for a, b in zip(straight_model.state_dict().values(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ddp_with_two_processes(tone_corpus, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", TINYKWS_CACHE=str(tmp_path / "cache"))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "tinykws",
        "train",
        "--data",
        str(tone_corpus),
        "--model",
        "tinyconv",
        "--frontend",
        "logmel",
        "--epochs",
        "2",
        "--out",
        str(out),
    ]
    # ~15 s on an idle 2-core machine; the generous limit only guards against a hang.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((out / "train" / "history.json").read_text())
    assert len(history["train_loss"]) == 2
    assert (out / "evaluate" / "validation.json").is_file()


def test_unknown_weight_scales_only_the_unknown_class(tone_data):
    from dataclasses import replace

    labels = ("yes", "no", "_unknown_")
    data = replace(tone_data, class_weights=np.array([1.0, 0.5, 2.0], np.float32), labels=labels)
    assert data.loss_weights().tolist() == [1.0, 0.5, 2.0]
    assert data.loss_weights(unknown_weight=3.0).tolist() == [1.0, 0.5, 6.0]
    assert data.loss_weights(False, 2.0).tolist() == [1.0, 1.0, 2.0]
    with pytest.raises(TinyKWSError, match="no _unknown_ class"):
        replace(data, labels=("yes", "no", "up")).loss_weights(unknown_weight=2.0)
    with pytest.raises(TinyKWSError, match="unknown_weight and .* must be positive"):
        TrainConfig(unknown_weight=0.0)


def test_distillation_pulls_the_student_towards_the_teacher(tone_data, tmp_path):
    """With distill_weight 1 the loss is the KL to the teacher alone: a student trained that way
    agrees with the teacher far more often than chance, though it never sees a label."""
    torch.manual_seed(0)
    shape = tone_data.frontend.output_shape
    teacher = build_model(model_config("tinyconv", 12, shape))
    fit(
        teacher,
        tone_data,
        TrainConfig(epochs=6, batch_size=8, augment=AugmentConfig(enabled=False)),
        tmp_path / "t",
    )
    student = build_model(model_config({"family": "tinyconv", "filters": 4}, 12, shape))
    cfg = TrainConfig(
        epochs=6,
        batch_size=8,
        distill_weight=1.0,
        label_smoothing=0.0,
        augment=AugmentConfig(enabled=False),
    )
    fit(student, tone_data, cfg, tmp_path / "s", teacher=teacher)
    x = tone_data.normalization.apply_torch(torch.from_numpy(tone_data.val_features)).unsqueeze(1)
    with torch.no_grad():
        agree = (student.eval()(x).argmax(1) == teacher.eval()(x).argmax(1)).float().mean()
    assert agree >= 0.5  # 12 classes: chance is ~0.08
    with pytest.raises(TinyKWSError, match="no teacher"):
        fit(student, tone_data, cfg, tmp_path / "none")
    with pytest.raises(TinyKWSError, match="distill_weight"):
        TrainConfig(distill_weight=1.5)
