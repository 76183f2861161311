"""The published methods: views cut once from the whole image, SwAV against its official algorithm, DINO's
and BYOL's teacher/target (no gradient, exact EMA), DINO's centre, collapse, and the fit loop's hooks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss
from lightly.loss.swav_loss import sinkhorn

from conftest import gen, one_torch_thread
from imgwang.data.augment import gaussian_blur, make_augment
from imgwang.data.sample import draw_image
from imgwang.models.encoders import create_encoder
from imgwang.models.losses import dino_loss, update_center
from imgwang.stages.pretrain import slow_start_note
from imgwang.tasks import get_task


def sample_like(b=16, size=32, seed=0):
    """Images drawn as the sample data set draws them (classes of shapes, textures, colours)."""
    rng = np.random.default_rng(seed)
    pixels = np.stack([draw_image(i % 20, rng, (size, size)) for i in range(b)])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255


# --- views: cut once, from the whole image ---------------------------------------------------------

def coordinate_image(side: int) -> torch.Tensor:
    """Channel 0 = x, channel 1 = y, both in [0, 1]: a view's value range tells which part it shows."""
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    return torch.stack([x, y, torch.full_like(x, 0.5)])[None]


@pytest.mark.parametrize("name, params, kinds", [
    ("simclr", dict(jitter=0.0, gray_p=0.0, blur_p=0.0), [(2, 64, (0.08, 1.0))]),
    ("swav", dict(jitter=0.0, gray_p=0.0, blur_p=0.0), [(2, 64, (0.25, 1.0)), (6, 48, (0.2, 0.35))]),
    ("byol", dict(), None),
    ("dino", dict(), None),
])
def test_each_view_is_one_crop_of_the_whole_image_within_the_configured_area(name, params, kinds):
    """The stage hands a view-making task the whole stored image (80 px for SIZE 64) and sets view_size:
    each view's area, read from the coordinate ramps it shows, is a fraction of the WHOLE image in the
    task's range (a loader crop first would have shrunk it, down to ~0.07 of the image before)."""
    from imgwang.stages.pretrain import build_pretext

    task, _ = build_pretext(dict(task=name, task_params=params, arch="tinyconv", size=64))
    assert task.makes_views and task.view_size == 64
    if kinds is None:  # colour ops of byol/dino would blur the ramps: check sizes and scales declared
        declared = [(n, a.size, a.scale) for n, a in task.view_kinds(64)]
        assert declared[0][1] == 64 and declared[-1][1] <= 64
        return
    images = coordinate_image(80).expand(400, -1, -1, -1)
    views = task.make_views(images, gen(1))
    first = 0
    for count, side, (lo, hi) in kinds:
        for v in views[first:first + count]:
            assert v.shape == (400, 3, side, side)
            # the ramps step 1/79 per pixel; a resized crop's extreme samples sit half an output pixel inside
            width = v[:, 0].amax((1, 2)) - v[:, 0].amin((1, 2))
            height = v[:, 1].amax((1, 2)) - v[:, 1].amin((1, 2))
            w_px = width * 79 * side / (side - 1) + 1
            h_px = height * 79 * side / (side - 1) + 1
            area = (w_px * h_px / 80**2)
            assert area.min() >= lo * 0.85 and area.max() <= hi * 1.05, (area.min(), area.max())
            assert area.max() - area.min() > 0.5 * (hi - lo)  # it spans the range
        first += count
    assert first == len(views)


def test_the_stage_gives_view_making_tasks_the_stored_image_and_others_the_loader_crop(tmp_path):
    from imgwang.data.sample import make_sample
    from imgwang.stages.pretrain import pretext_loaders
    from imgwang.stages.stage_data import load_stage_data

    make_sample(tmp_path / "s", n_train=2, n_unsup=8, n_val=2)
    sd = load_stage_data(str(tmp_path / "s"), 32, cache_dir=tmp_path / "cache", progress=False)
    for name, whole in (("simclr", True), ("byol", True), ("rotation", False)):
        train, val = pretext_loaders(sd, get_task(name), sd.unlabelled_rows, sd.val_rows, 4, "cpu", 0)
        batch = next(iter(train))
        assert (train.augment is None) == whole and (val.augment is None) == whole
        side = sd.cache.pixels.shape[1]
        assert batch.images.shape[-1] == (side if whole else 32)
        if whole:  # exactly the stored pixels
            assert torch.equal(batch.images, torch.from_numpy(sd.cache.pixels[batch.indices.numpy()]).permute(0, 3, 1, 2).float() / 255)


# --- augmentation pieces the recipes add ----------------------------------------------------------

def test_blur_matches_kornia_per_sample_and_solarize_inverts_the_bright_half():
    import kornia

    x = torch.rand(4, 3, 40, 36, generator=gen(2))
    sigma = torch.tensor([0.3, 0.9, 1.5, 2.0])
    ours = gaussian_blur(x, sigma, 4)
    reference = torch.cat([kornia.filters.gaussian_blur2d(x[i:i + 1], (9, 9), (float(s), float(s)), border_type="reflect")
                           for i, s in enumerate(sigma)])
    assert (ours - reference).abs().max() < 1e-5
    full = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    plain = make_augment(32, "pretrain", **full)(x[:, :, :32, :32], gen(3))
    solar = make_augment(32, "pretrain", solarize_p=1.0, **full)(x[:, :, :32, :32], gen(3))
    assert torch.allclose(solar, torch.where(plain >= 0.5, 1 - plain, plain))
    one = x[:1, :, :32, :32].expand(64, -1, -1, -1)
    blurred = make_augment(32, "pretrain", blur_p=0.5, **full)(one, gen(4))
    changed = (blurred - plain[:1]).abs().flatten(1).amax(1) > 1e-4
    assert 20 <= int(changed.sum()) <= 44  # p 0.5 of 64, per sample


# --- SwAV against the official algorithm (facebookresearch/swav, main_swav.py) -------------------

def official_sinkhorn(out, epsilon=0.05, iterations=3):
    """distributed_sinkhorn from main_swav.py, one process (world size 1)."""
    Q = torch.exp(out / epsilon).t()
    B = Q.shape[1]
    K = Q.shape[0]
    Q /= torch.sum(Q)
    for _ in range(iterations):
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def official_swav_loss(output, bs, nmb_crops, crops_for_assign=(0, 1), temperature=0.1, queue=None, prototypes=None):
    """The loss loop of main_swav.py's train(): codes of each assigned crop (queue first, then the batch,
    the batch's rows kept), predicted by every other crop."""
    loss = 0
    for i, crop_id in enumerate(crops_for_assign):
        with torch.no_grad():
            out = output[bs * crop_id: bs * (crop_id + 1)].detach()
            if queue is not None:
                out = torch.cat((torch.mm(queue[i], prototypes.t()), out))
            q = official_sinkhorn(out)[-bs:]
        subloss = 0
        for v in np.delete(np.arange(np.sum(nmb_crops)), crop_id):
            x = output[bs * v: bs * (v + 1)] / temperature
            subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        loss += subloss / (np.sum(nmb_crops) - 1)
    return loss / len(crops_for_assign)


def test_sinkhorn_codes_match_the_official_ones_on_fixed_scores():
    scores = F.normalize(torch.randn(24, 16, generator=gen(5)), dim=1) @ F.normalize(torch.randn(30, 16, generator=gen(6)), dim=1).T
    ours, official = sinkhorn(scores, iterations=3, epsilon=0.05), official_sinkhorn(scores.clone())
    assert torch.allclose(ours, official, atol=1e-6)
    assert torch.allclose(ours.sum(1), torch.ones(24), atol=1e-5)  # each row an assignment


def test_swav_loss_matches_the_official_loop_with_small_crops_and_a_queue():
    task = get_task("swav", n_prototypes=30, proj_dim=16, n_small_crops=3, epsilon=0.05)  # the official default
    bs = 8
    z = F.normalize(torch.randn(5 * bs, 16, generator=gen(7)), dim=1)
    prototypes = F.normalize(torch.randn(30, 16, generator=gen(8)), dim=1)
    scores = z @ prototypes.T
    views = tuple(scores.split(bs))
    ours = task.loss((None, views, ()), None)
    assert float(ours) == pytest.approx(float(official_swav_loss(scores, bs, [2, 3])), rel=1e-5)
    queue = F.normalize(torch.randn(2, 16, 16, generator=gen(9)), dim=1)
    queued = tuple(q @ prototypes.T for q in queue)
    ours_q = task.loss((None, views, queued), None)
    official_q = official_swav_loss(scores, bs, [2, 3], queue=queue, prototypes=prototypes)
    assert float(ours_q) == pytest.approx(float(official_q), rel=1e-5)
    assert float(ours_q) != pytest.approx(float(ours), rel=1e-3)


def test_swav_prototypes_have_no_bias_and_stay_frozen_for_the_first_iterations():
    task = get_task("swav", n_prototypes=10, proj_dim=8, n_small_crops=0, freeze_prototypes_iters=2)
    torch.manual_seed(0)
    model = task.build_model(create_encoder("tinyconv"))
    assert [n for n, _ in model.prototypes.named_parameters()] == ["weight"]  # bias-free
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    views, targets, _ = task.make_batch(sample_like(8), gen(1))
    seen = []
    for step in range(4):
        task.before_step(model, step, 4, 100)
        loss = task.loss(model(views), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        seen.append(bool(model.prototypes.weight.grad.abs().sum() > 0))
        before = model.prototypes.weight.detach().clone()
        optimizer.step()
        moved = not torch.equal(before, model.prototypes.weight)
        assert moved == seen[-1]
    assert seen == [False, False, True, True]  # a zero gradient while frozen, then a real one
    task = get_task("swav")  # default -1: frozen for the first epoch, whatever its length
    task.before_step(model, 99, 1000, 100)
    assert model.prototypes.frozen
    task.before_step(model, 100, 1000, 100)
    assert not model.prototypes.frozen


def test_swav_queue_starts_a_fraction_into_the_run():
    task = get_task("swav", n_prototypes=6, proj_dim=8, n_small_crops=0, queue_size=8, queue_start=0.4)  # 2 of 5
    model = task.build_model(create_encoder("tinyconv"))
    views = task.make_batch(sample_like(4), gen())[0]
    for epoch in range(2):
        task.on_epoch_start(model, epoch, 5)
        model(views)
        assert model._filled == 0  # not yet filled
    task.on_epoch_start(model, 2, 5)
    model(views)
    assert model._filled == 4


# --- DINO and BYOL: teacher / target ----------------------------------------------------------------

def _teacher_pairs(name, model):
    if name == "dino":
        return [(model.encoder, model.teacher_encoder), (model.head, model.teacher_head)]
    return [(model.encoder, model.target_encoder), (model.projector, model.target_projector)]


@pytest.mark.parametrize("name", ["dino", "byol"])
def test_the_teacher_gets_no_gradient_and_follows_the_ema_exactly(name):
    task = get_task(name, **({"out_dim": 64, "n_local_crops": 2} if name == "dino" else {}))
    torch.manual_seed(0)
    model = task.build_model(create_encoder("tinyconv"))
    pairs = _teacher_pairs(name, model)
    for student, teacher in pairs:  # it starts as the student
        assert all(torch.equal(s, t) for s, t in zip(student.state_dict().values(), teacher.state_dict().values()))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with one_torch_thread():
        views, targets, _ = task.make_batch(sample_like(8), gen(2))
        if name == "dino":
            task.on_epoch_start(model, 1, 2)  # past the last layer's frozen epoch
        loss = task.loss(model(views), targets)
        loss.backward()
        for _, teacher in pairs:
            assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
        optimizer.step()
        before = [[t.detach().clone() for t in teacher.parameters()] for _, teacher in pairs]
        m = task.momentum_at(3, 10)
        task.after_step(model, 3, 10)
    assert 0.996 < m < 1.0 and task.momentum_at(0, 10) == pytest.approx(0.996) and task.momentum_at(10, 10) == pytest.approx(1.0)
    for (student, teacher), old in zip(pairs, before):
        for s, t, o in zip(student.parameters(), teacher.parameters(), old):
            assert torch.allclose(t, m * o + (1 - m) * s.detach(), atol=1e-7)
    assert any(not torch.equal(t, o) for (_, teacher), old in zip(pairs, before) for t, o in zip(teacher.parameters(), old))


def test_dino_loss_matches_lightly_and_the_centre_is_a_moving_mean_of_the_teacher():
    teacher = [torch.randn(6, 20, generator=gen(s)) for s in range(2)]
    student = [torch.randn(6, 20, generator=gen(10 + s)) for s in range(5)]
    reference = DINOLoss(20, warmup_teacher_temp=0.05, teacher_temp=0.05, warmup_teacher_temp_epochs=0, student_temp=0.1)
    reference.center.copy_(torch.randn(1, 1, 20, generator=gen(30)))
    ours = dino_loss(teacher, student, reference.center[0].clone(), 0.05, 0.1)
    center = reference.center[0].clone()
    expected = reference(teacher, student, teacher_temp=0.05)  # also moves lightly's centre
    assert float(ours) == pytest.approx(float(expected), rel=1e-5)
    update_center(center, teacher, 0.9)
    assert torch.allclose(center, reference.center[0], atol=1e-6)
    assert center.shape == (1, 20)


def test_dino_model_updates_its_centre_in_training_forwards_and_the_loss_uses_the_one_before():
    task = get_task("dino", out_dim=32, n_local_crops=2)
    torch.manual_seed(0)
    model = task.build_model(create_encoder("tinyconv"))
    views = task.make_batch(sample_like(6), gen(3))[0]
    model.center.fill_(0.25)
    teacher, student, center, _ = model(views)
    assert torch.all(center == 0.25)
    expected = 0.9 * 0.25 + 0.1 * torch.cat(teacher).mean(0, keepdim=True)
    assert torch.allclose(model.center, expected, atol=1e-6)
    model.eval()
    with torch.no_grad():
        model(views)
    assert torch.allclose(model.center, expected, atol=1e-6)  # validation leaves it alone


def test_dino_teacher_temperature_warms_up_linearly_and_the_last_layer_waits_an_epoch():
    task = get_task("dino", warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=4, out_dim=16,
                    n_local_crops=0)
    temps = [task.teacher_temp_at(e, 10) for e in range(6)]
    assert temps == pytest.approx([0.04, 0.05, 0.06, 0.07, 0.07, 0.07])
    assert task.teacher_temp_at(0, 2) == pytest.approx(0.04) and task.teacher_temp_at(1, 2) == pytest.approx(0.07)  # cut to the run
    model = task.build_model(create_encoder("tinyconv"))
    task.on_epoch_start(model, 0, 10)
    assert model.last_layer_frozen and task.current_teacher_temp == pytest.approx(0.04)
    views, targets, _ = task.make_batch(sample_like(4), gen())
    task.loss(model(views), targets).backward()
    assert torch.all(model.head.last_layer.weight_v.grad == 0)
    assert model.head.layers[0].weight.grad.abs().sum() > 0  # the rest of the head learns
    task.on_epoch_start(model, 1, 10)
    model.zero_grad()
    task.loss(model(views), targets).backward()
    assert not model.last_layer_frozen and model.head.last_layer.weight_v.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["dino", "byol"])
def test_no_collapse_after_a_few_steps_on_sample_like_images(name):
    """Through fit (hooks included): the encoder's embeddings still differ across images afterwards."""
    from imgwang.data.batch import Batch
    from imgwang.train import FitSettings, fit

    images = sample_like(48, seed=4)

    class Loader:
        def __len__(self):
            return 3

        def __iter__(self):
            for i in range(3):
                x = images[16 * i:16 * (i + 1)]
                yield Batch(images=x, labels=torch.full((16,), -1), indices=torch.arange(16 * i, 16 * (i + 1)))

    def spread(encoder):  # mean per-dimension std of the unit embeddings across the images: 0 when collapsed
        encoder.eval()
        with torch.no_grad():
            return float(F.normalize(encoder(images), dim=1).std(dim=0).mean())

    task = get_task(name, **({"out_dim": 256, "n_local_crops": 2} if name == "dino" else {}))
    torch.manual_seed(0)
    model = task.build_model(create_encoder("tinyconv"))
    with one_torch_thread():
        untrained = spread(model.encoder)
        history = fit(model, task, Loader(), None, FitSettings(epochs=3, lr=3e-3, device="cpu", progress=False))
        trained = spread(model.encoder)
    # measured: untrained 0.027, after 9 steps 0.043 (dino) and 0.041 (byol)
    assert trained > 0.75 * untrained, (untrained, trained)
    # the loop's collapse monitor, every epoch: the 256-d embeddings (dino's bottleneck, byol's projection) spread
    assert [h["embedding_dim"] for h in history] == [256] * 3
    assert all(0.2 / 16 < h["embedding_std"] <= 1 for h in history), [h["embedding_std"] for h in history]
    assert task.momentum_at(8, 9) > task.momentum_at(0, 9)


def test_pretraining_notes_a_run_too_short_for_a_slow_starting_method():
    byol, dino, simclr = get_task("byol"), get_task("dino"), get_task("simclr")
    note = slow_start_note(byol, 510)
    assert note.startswith("note: byol starts slowly") and "510" in note and "5,000" in note
    assert slow_start_note(dino, 17 * 30) is not None
    assert slow_start_note(byol, 5000) is None and slow_start_note(dino, 6000) is None
    assert slow_start_note(simclr, 10) is None  # simclr learns the sample's classes within 510 steps


def test_the_slow_start_note_is_glued_and_opens_the_notebook_beside_the_knn_it_explains():
    from imgwang.stages.pretrain import pretrain_scraps
    from imgwang.stages.summary import pretrain_lines

    history = [{"epoch": 1, "train_loss": 0.6, "embedding_std": 0.05, "embedding_dim": 256}]
    result = {"task": get_task("byol"), "val_metric": 0.06, "val_loss": 0.63, "history": history,
              "images_per_s": 150.0, "wall_s": 200.0, "knn_acc": 0.07, "knn_acc_init": 0.09, "chance": 1 / 127}
    quiet = pretrain_scraps({}, {**result, "note": None})
    noted = pretrain_scraps({}, {**result, "note": slow_start_note(get_task("byol"), 510)})
    assert "pretrain_note" not in quiet and noted["pretrain_note"].startswith("note: byol starts slowly")
    lines = pretrain_lines(noted, None)
    knn = next(i for i, line in enumerate(lines) if line.startswith("kNN monitor"))
    assert lines[knn + 1] == noted["pretrain_note"]
    assert not any(line.startswith("note:") for line in pretrain_lines(quiet, None))
