"""Interrupt and resume: a resumed run ends exactly where an uninterrupted one does."""

import os
import signal

import pytest
import torch
from test_train_loop import NoisyClassification, make_world, quick_fit, single_thread  # noqa: F401  (autouse fixture)

from imgwang.core.errors import ConfigError, ImgwangError
from imgwang.train import EarlyStop, TrainingInterrupted, load_checkpoint

EPOCHS = 5
TIMING = {"seconds", "images_per_s"}  # the only history values allowed to differ between runs


def run(checkpoint_dir, **kw):
    model, obj, train, val = make_world()
    kw = {"epochs": EPOCHS, "lr": 2e-2, "device": "cpu", "progress": False, "checkpoint_dir": checkpoint_dir, **kw}
    history = quick_fit(model, obj, train, val, **kw)
    return model, history


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 5-epoch run everything is compared against."""
    return run(tmp_path_factory.mktemp("reference"))


def assert_same_run(a, b):
    (model_a, hist_a), (model_b, hist_b) = a, b
    for (name, pa), pb in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(pa, pb), f"{name} differs after resume"
    assert len(hist_a) == len(hist_b) == EPOCHS
    for ra, rb in zip(hist_a, hist_b):
        assert {k: v for k, v in ra.items() if k not in TIMING} == {k: v for k, v in rb.items() if k not in TIMING}


def interrupt_at(epoch):
    """on_epoch_end callback that stops the run the way a caller would, after `epoch` is saved."""
    def callback(row):
        if row["epoch"] == epoch:
            raise TrainingInterrupted(epoch)
    return callback


def signal_at(epoch, sig):
    def callback(row):
        if row["epoch"] == epoch:
            os.kill(os.getpid(), sig)
    return callback


def test_resume_after_an_interrupting_callback_matches_an_uninterrupted_run(tmp_path, reference):
    with pytest.raises(TrainingInterrupted):
        run(tmp_path, on_epoch_end=interrupt_at(3))
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    assert_same_run(run(tmp_path, resume=True), reference)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_epoch_and_resume_matches(tmp_path, reference, sig):
    before = signal.getsignal(sig)
    with pytest.raises(TrainingInterrupted) as info:
        run(tmp_path, on_epoch_end=signal_at(3, sig))
    assert info.value.epoch_completed == 3 and signal.Signals(sig).name in str(info.value)
    assert signal.getsignal(sig) is before  # fit restored the previous handler
    assert_same_run(run(tmp_path, resume=True), reference)


def test_a_signal_mid_epoch_finishes_nothing_more(tmp_path):
    """SIGINT during epoch 3: the loop stops at the next step; last.pt stays the complete epoch 2."""
    calls = []

    class SignalsInEpoch3(NoisyClassification):
        def prepare(self, batch, generator):
            calls.append(1)
            if len(calls) == 2 * 6 + 2:  # 6 prepares per epoch (4 train + 2 val): 2nd train batch of epoch 3
                os.kill(os.getpid(), signal.SIGINT)
            return super().prepare(batch, generator)

    model, _, train, val = make_world()
    with pytest.raises(TrainingInterrupted) as info:
        quick_fit(model, SignalsInEpoch3(), train, val, epochs=EPOCHS, lr=2e-2, checkpoint_dir=tmp_path)
    assert info.value.epoch_completed == 2
    assert len(calls) == 2 * 6 + 2  # not one more batch after the signal
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_a_half_written_tmp_file_is_never_read(tmp_path, reference):
    with pytest.raises(TrainingInterrupted):
        run(tmp_path, on_epoch_end=interrupt_at(3))
    # a kill during the epoch-4 save would leave exactly this: garbage at a temporary name, last.pt intact
    (tmp_path / ".last.pt.k1ll3d.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    assert_same_run(run(tmp_path, resume=True), reference)


def test_a_truncated_last_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    with pytest.raises(TrainingInterrupted):
        run(tmp_path, on_epoch_end=interrupt_at(2))
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImgwangError, match="unreadable"):
        run(tmp_path, resume=True)


def test_resume_refuses_a_different_run(tmp_path):
    with pytest.raises(TrainingInterrupted):
        run(tmp_path, epochs=3, on_epoch_end=interrupt_at(1))
    with pytest.raises(ConfigError, match="epochs=3"):
        run(tmp_path, epochs=4, resume=True)


def test_resume_after_early_stop_trains_no_more(tmp_path):
    stop = lambda: EarlyStop(metric="val_loss", patience=1, min_delta=10.0)  # noqa: E731  stops after epoch 2
    _, first = run(tmp_path, early_stop=stop())
    assert len(first) == 2
    epochs_seen = []
    _, again = run(tmp_path, early_stop=stop(), resume=True, on_epoch_end=lambda row: epochs_seen.append(row["epoch"]))
    assert again == first and epochs_seen == []


def test_an_interrupted_frozen_epoch_leaves_the_encoder_trainable(tmp_path):
    model, obj, train, val = make_world()
    with pytest.raises(TrainingInterrupted):
        quick_fit(model, obj, train, val, epochs=3, freeze_epochs=2, lr=1e-2, checkpoint_dir=tmp_path,
                  on_epoch_end=interrupt_at(1))
    assert all(p.requires_grad for p in model.encoder.parameters())
