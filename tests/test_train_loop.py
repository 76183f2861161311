"""The fit loop on a tiny, easy problem: learning, history, early stop, freezing, lr groups, checkpoints."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgwang.core.errors import ConfigError, ImgwangError
from imgwang.data.batch import Batch
from imgwang.spec.checks import optimizer_name
from imgwang.stages.resolve import resolve
from imgwang.train import EarlyStop, FitSettings, fit, load_checkpoint, make_scheduler, param_groups, plot_grad_stats

# --- a tiny in-memory world (also used by test_train_resume.py and test_tracking.py) ------------------

@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Ops this small only lose to thread start-up (10x on a busy 2-core box); restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def easy_images(n=64, size=8, seed=0):
    """Class 1 images are brighter in the red channel than in the green one, class 0 the other way."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.rand(n, 3, size, size, generator=g) * 0.5
    images[labels == 1, 0] += 0.4
    images[labels == 0, 1] += 0.4
    return images, labels


class InMemoryLoader:
    """Duck-typed CachedLoader: yields Batch, len() = batches, set_epoch(e) fixes the order from (seed, e)."""

    def __init__(self, images, labels, batch_size=16, shuffle=True, seed=0):
        self.images, self.labels, self.batch_size, self.shuffle, self.seed = images, labels, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.images) // self.batch_size

    def __iter__(self):
        n = len(self.images)
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
                 if self.shuffle else torch.arange(n))
        for i in range(len(self)):
            rows = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield Batch(images=self.images[rows], labels=self.labels[rows], indices=rows)


class NoisyClassification:
    """Supervised objective whose prepare draws noise from the generator (so generator seeding matters)."""

    metric_name = "accuracy"
    chance = 0.5

    def prepare(self, batch, generator):
        noise = torch.randn(batch.images.shape, generator=generator, device=generator.device) * 0.05
        return batch.images + noise, batch.labels, {"indices": batch.indices}

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)

    def metric(self, outputs, targets):
        return (outputs.argmax(1) == targets).float().mean()


class TinyNet(nn.Module):
    """Encoder with BatchNorm (to check eval-mode freezing) and a head with dropout (global RNG use)."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 2))

    def forward(self, x):
        return self.head(self.encoder(x))


def make_world(seed=0, n_train=64, n_val=32):
    images, labels = easy_images(n_train + n_val, seed=seed)
    train = InMemoryLoader(images[:n_train], labels[:n_train], seed=seed)
    val = InMemoryLoader(images[n_train:], labels[n_train:], shuffle=False)
    return TinyNet(seed), NoisyClassification(), train, val


RUN_TIME = ("early_stop", "tracker", "epoch_metrics", "on_epoch_end")  # fit's own arguments, beside the settings


def quick_fit(model, objective, train, val, **kw):
    """fit with FitSettings from `kw` (2 epochs, lr 1e-2, on the CPU, quiet unless it says otherwise)."""
    run_time = {k: kw.pop(k) for k in RUN_TIME if k in kw}
    settings = FitSettings(**{"epochs": 2, "lr": 1e-2, "device": "cpu", "progress": False, **kw})
    return fit(model, objective, train, val, settings, **run_time)


# --- tests --------------------------------------------------------------------------------------------

def test_learns_an_easy_problem():
    model, obj, train, val = make_world()
    history = quick_fit(model, obj, train, val, epochs=8, lr=3e-2)
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert history[-1]["val_accuracy"] >= 0.9  # chance is 0.5
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_fit_trains_with_the_shared_training_step():
    """An epoch of fit is TrainStep.train over the loader's task batches: the same weights afterwards, so the
    bench, the GPU check and the overfit check, which run TrainStep, run fit's own step."""
    from imgwang.train.loop import derive_seed, seed_everything, seeded_generator
    from imgwang.train.step import TrainStep

    settings = FitSettings(epochs=2, lr=3e-2, device="cpu", progress=False, grad_clip=0.5, head_lr_mult=3.0)
    model, obj, train, _ = make_world()
    quick_fit(model, obj, train, None, **vars(settings))
    twin, _, train, _ = make_world()
    step = TrainStep(twin, obj, settings, total_steps=2 * len(train), steps_per_epoch=len(train))
    seed_everything(derive_seed(0, "fit"))  # dropout draws from the global RNG, seeded as fit seeds it
    for epoch in range(2):
        train.set_epoch(epoch)
        gen = seeded_generator(torch.device("cpu"), derive_seed(0, "train", epoch))
        for i, batch in enumerate(train):
            step.train(*step.prepare(batch, gen), epoch * len(train) + i)
    assert step.lrs["head_lr"] == pytest.approx(3 * step.lrs["lr"])
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name


def test_history_has_every_key_and_one_row_per_epoch(capsys):
    model, obj, train, val = make_world()
    history = quick_fit(model, obj, train, val, epochs=3, progress=True, grad_clip=1.0)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    expected = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "head_lr", "seconds",
                "images_per_s", "grad_norm"}
    for row in history:
        assert set(row) == expected
        assert all(math.isfinite(v) for v in row.values())
        assert 0.0 <= row["train_accuracy"] <= 1.0 and 0.0 <= row["val_accuracy"] <= 1.0
        assert row["images_per_s"] > 0 and row["seconds"] > 0
    out = capsys.readouterr().out
    assert out.count("epoch ") >= 3 and "val_accuracy" in out  # one readable summary line per epoch


def test_an_epoch_line_says_how_long_the_rest_of_the_run_will_take(capsys):
    from imgwang.train.loop import duration, log_epoch
    from imgwang.train.tracking import Tracker

    assert [duration(s) for s in (4.4, 59.6, 245, 3599, 7620)] == ["4s", "1m00s", "4m05s", "59m59s", "2h07m"]
    row = {"epoch": 3, "train_loss": 0.5, "lr": 1e-3, "seconds": 10.0, "images_per_s": 64.0}
    log_epoch(Tracker(), row, 10, True, 30, "accuracy", False, None, left_s=270.0)
    log_epoch(Tracker(), {**row, "epoch": 30}, 10, True, 30, "accuracy", False, None, left_s=0.0)
    first, last = capsys.readouterr().out.splitlines()
    assert first.startswith("epoch 3/30") and first.endswith("about 4m30s left")
    assert last.startswith("epoch 30/30") and "left" not in last


def test_generators_train_varies_by_epoch_val_is_fixed():
    """Task randomness: train draws differ from epoch to epoch, val draws repeat (comparable val metrics)."""
    model, obj, train, val = make_world()
    draws = []

    class Recording(NoisyClassification):
        def prepare(self, batch, generator):
            inputs, targets, meta = super().prepare(batch, generator)
            draws.append((inputs - batch.images).sum().item())
            return inputs, targets, meta

    quick_fit(model, Recording(), train, val, epochs=2)
    per_epoch = len(train) + len(val)
    e1, e2 = draws[:per_epoch], draws[per_epoch:]
    assert e1[len(train):] == e2[len(train):]  # val: same noise both epochs
    assert e1[:len(train)] != e2[:len(train)]  # train: new noise each epoch


def test_early_stop_stops_after_patience_epochs_without_improvement():
    model, obj, train, val = make_world()
    stop = EarlyStop(metric="val_loss", mode="min", patience=2, min_delta=10.0)  # nothing improves by 10
    history = quick_fit(model, obj, train, val, epochs=10, early_stop=stop)
    assert len(history) == 3 and stop.best_epoch == 1


def test_early_stop_counts_epochs_since_the_best():
    stop = EarlyStop(metric="val_accuracy", mode="max", patience=2)
    seq = [0.5, 0.6, 0.55, 0.7, 0.69, 0.68]
    stops = [stop.step({"epoch": i + 1, "val_accuracy": v}) for i, v in enumerate(seq)]
    assert stops == [False, False, False, False, False, True] and stop.best == 0.7
    with pytest.raises(ConfigError):
        EarlyStop(mode="up")


def test_freeze_epochs_keep_the_encoder_body_unchanged_while_its_batchnorm_trains_as_in_fastai():
    """fastai (train_bn=True) keeps a frozen body's norm layers training: their scale and shift learn and the
    BatchNorm statistics follow the data; every other encoder weight waits for the unfrozen epochs."""
    model, obj, train, val = make_world()
    snapshots = []

    def snap(row):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    start = {k: v.clone() for k, v in model.state_dict().items()}
    quick_fit(model, obj, train, val, epochs=3, freeze_epochs=2, on_epoch_end=snap)
    body = ["encoder.0.weight", "encoder.0.bias"]
    norm = ["encoder.1.weight", "encoder.1.bias", "encoder.1.running_mean", "encoder.1.running_var"]
    for epoch in (0, 1):
        assert all(torch.equal(snapshots[epoch][k], start[k]) for k in body), f"the conv moved in epoch {epoch + 1}"
        moved = [k for k in norm if not torch.equal(snapshots[epoch][k], snapshots[epoch - 1][k] if epoch else start[k])]
        assert moved == norm, f"epoch {epoch + 1}: only {moved} of the BatchNorm changed"
    assert snapshots[0]["encoder.1.num_batches_tracked"] == len(train)  # train mode: every batch counted
    assert not torch.equal(snapshots[0]["head.1.weight"], start["head.1.weight"])  # the head trained meanwhile
    assert not torch.equal(snapshots[2]["encoder.0.weight"], start["encoder.0.weight"])
    assert all(p.requires_grad for p in model.parameters())  # unfrozen at the end


def test_norm_layers_are_what_a_frozen_encoder_keeps_training():
    from imgwang.train.freeze import norm_params, set_frozen

    encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.InstanceNorm2d(4, affine=True),
                            nn.Flatten(), nn.LayerNorm(4), nn.Linear(4, 2))
    params = list(encoder.parameters())
    set_frozen(params, True, keep=norm_params(encoder))
    trained = [name for name, p in encoder.named_parameters() if p.requires_grad]
    assert trained == ["1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"]  # fastai's norm_types
    set_frozen(params, False, keep=set())
    assert all(p.requires_grad for p in params)


def test_head_gets_its_own_learning_rate():
    model = TinyNet()
    groups = {g["name"]: g for g in param_groups(model, lr=1e-3, weight_decay=0.05, head_lr_mult=10.0)}
    assert set(groups) == {"encoder", "encoder_no_decay", "head", "head_no_decay"}
    assert groups["encoder"]["lr"] == 1e-3 and groups["head"]["lr"] == pytest.approx(1e-2)
    assert groups["encoder_no_decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 0.05
    enc_ids = {id(p) for p in model.encoder.parameters()}
    assert all(id(p) in enc_ids for p in groups["encoder"]["params"] + groups["encoder_no_decay"]["params"])
    assert not any(id(p) in enc_ids for p in groups["head"]["params"] + groups["head_no_decay"]["params"])
    for schedule in ("onecycle", "cosine"):
        model, obj, train, val = make_world()
        history = quick_fit(model, obj, train, val, epochs=2, lr=1e-3, head_lr_mult=10.0, schedule=schedule)
        for row in history:
            assert row["head_lr"] == pytest.approx(10 * row["lr"]) and row["lr"] > 0


def test_schedules_peak_at_the_group_lr():
    w = nn.Parameter(torch.zeros(2, 2))
    for kind in ("onecycle", "cosine"):
        opt = torch.optim.SGD([{"params": [w], "lr": 0.1}], lr=0.1, momentum=0.9)
        sched = make_scheduler(opt, kind, total_steps=100, warmup_frac=0.1)
        lrs = []
        for _ in range(100):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        peak = max(range(100), key=lrs.__getitem__)
        assert max(lrs) == pytest.approx(0.1, rel=1e-3)
        assert (peak == 24) if kind == "onecycle" else (peak == 10)  # 25% of steps; 10% warmup
        assert lrs[0] < 0.02 and lrs[-1] < 0.01  # warm start, annealed end
        assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))  # rising to the peak
        assert all(a >= b for a, b in zip(lrs[peak:-1], lrs[peak + 1:]))  # falling after it
    with pytest.raises(ConfigError):
        make_scheduler(opt, "linear", total_steps=10)
    with pytest.raises(ConfigError):
        optimizer_name("optimizer", "lion")  # the one check of the name (the spec's), before any stage builds one


def test_best_and_last_checkpoints(tmp_path):
    model, obj, train, val = make_world()
    history = quick_fit(model, obj, train, val, epochs=4, lr=3e-2, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no .tmp left behind
    last, best = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "best.pt")
    assert last["epoch"] == 4 and len(last["history"]) == 4
    assert all(torch.equal(last["model"][k], v) for k, v in model.state_dict().items())
    best_epoch = min(history, key=lambda r: r["val_loss"])["epoch"]
    assert best["epoch"] == best_epoch and best["best"]["best"] == pytest.approx(history[best_epoch - 1]["val_loss"])
    fresh = TinyNet(seed=1)
    fresh.load_state_dict(best["model"])  # best.pt is usable as weights


def test_bad_arguments_fail_before_training(tmp_path):
    model, obj, train, val = make_world()
    with pytest.raises(ConfigError, match="optimizer=.lion"):  # a stage refuses it while resolving, before fit
        resolve("pretrain", {"data": "sample", "arch": "tinyconv", "device": "cpu", "optimizer": "lion"})
    with pytest.raises(ConfigError, match="cannot monitor"):
        quick_fit(model, obj, train, val, early_stop=EarlyStop(metric="val_acc"))
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        quick_fit(model, obj, train, val, resume=True)
    with pytest.raises(ConfigError, match="epochs"):
        quick_fit(model, obj, train, val, epochs=0)
    with pytest.raises(ConfigError, match="amp"):
        quick_fit(model, obj, train, val, amp="fp8")


def test_non_finite_loss_is_one_clear_error(tmp_path):
    model, obj, train, val = make_world()

    class Exploding(NoisyClassification):
        def loss(self, outputs, targets):
            return super().loss(outputs, targets) * float("nan")

    with pytest.raises(ImgwangError, match="training loss became nan"):
        quick_fit(model, Exploding(), train, val, checkpoint_dir=tmp_path)
    assert not (tmp_path / "last.pt").exists()  # a broken epoch is never saved as complete


def test_grad_stats_find_a_dead_layer():
    class WithDeadLayer(TinyNet):
        def __init__(self):
            super().__init__()
            self.dead = nn.Linear(6, 2)

        def forward(self, x):
            f = self.encoder(x)
            return self.head(f) + 0.0 * self.dead(f)  # gradient reaches `dead` but is exactly zero

    model, obj, train, val = make_world()
    model = WithDeadLayer()
    history = quick_fit(model, obj, train, val, epochs=1, grad_stats=True)
    stats = history[0]["grad_stats"]
    assert list(stats) == ["encoder.0.weight", "head.1.weight", "dead.weight"]  # weight tensors, layer order
    assert stats["encoder.0.weight"]["mean"] > 0 and stats["head.1.weight"]["mean"] > 0
    assert stats["dead.weight"] == {"mean": 0.0, "std": 0.0}
    fig = plot_grad_stats(stats)
    bars = fig.axes[0].patches
    assert len(bars) == 3 and bars[0].get_height() == pytest.approx(stats["encoder.0.weight"]["mean"])


def test_mixed_precision_and_channels_last_paths_train():
    """bf16 autocast and channels_last (the CUDA defaults) also run on the CPU; they must still learn."""
    model, obj, train, val = make_world()
    history = quick_fit(model, obj, train, val, epochs=4, lr=3e-2, amp="bf16", channels_last=True)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(math.isfinite(r["val_loss"]) for r in history)


def test_epoch_metrics_land_in_the_history_and_the_checkpoint(tmp_path):
    from imgwang.train import load_checkpoint

    model, obj, train, val = make_world()
    seen = []

    def epoch_metrics(m, epoch):
        seen.append((m is model, epoch))
        return {"knn_acc": epoch / 10} if epoch != 2 else {}

    history = quick_fit(model, obj, train, val, epochs=3, checkpoint_dir=tmp_path, epoch_metrics=epoch_metrics)
    assert seen == [(True, 1), (True, 2), (True, 3)]
    assert [h.get("knn_acc") for h in history] == [0.1, None, 0.3]
    saved = load_checkpoint(tmp_path / "last.pt")["history"]
    assert [h.get("knn_acc") for h in saved] == [0.1, None, 0.3]  # a resumed run keeps them
