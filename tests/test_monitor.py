"""The pretraining kNN monitor: which images it compares, when it runs, and that it can tell features apart."""

import numpy as np
import torch
from torch import nn

from conftest import plain_image_folder
from imgwang.evaluate.monitor import knn_monitor, split_for_knn
from imgwang.stages.data import load_stage_data


def test_split_alternates_within_each_class_so_both_halves_hold_every_class():
    labels = np.array([2, 0, 2, 1, 0, 2, 1, 0, 2])
    memory, query = split_for_knn(np.arange(100, 109), labels)
    assert not set(memory) & set(query) and sorted([*memory, *query]) == list(range(9))
    assert set(labels[memory]) == set(labels[query]) == {0, 1, 2}
    assert memory.tolist() == [0, 1, 3, 5, 7] and query.tolist() == [2, 4, 6, 8]
    memory, query = split_for_knn(np.arange(100, 109), labels, max_per_class=2)  # the first 2 of each class
    assert memory.tolist() == [0, 1, 3] and query.tolist() == [2, 4, 6]


class ColourEncoder(nn.Module):
    """Mean colour per channel: the sample draws every object at a random colour, so this names no class."""

    num_features = 3

    def forward(self, x):
        return x.mean(dim=(2, 3))


class EdgeEncoder(nn.Module):
    """Histogram of grey-level edge orientations (8 bins, weighted by strength): blind to colour and place,
    it sees the outlines of the sample's objects, which is what their classes differ in."""

    num_features = 8

    def forward(self, x):
        grey = x.mean(1)
        gy, gx = grey[:, 1:, :-1] - grey[:, :-1, :-1], grey[:, :-1, 1:] - grey[:, :-1, :-1]
        angle = torch.remainder(torch.atan2(gy, gx), torch.pi)
        which = (angle / torch.pi * 8).long().clamp(max=7)
        magnitude = torch.hypot(gx, gy)
        histogram = torch.stack([(magnitude * (which == k)).sum((1, 2)) for k in range(8)], 1)
        return histogram / histogram.sum(1, keepdim=True) - 1 / 8  # centred, so cosine compares shapes


class Wrapper(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder


def test_monitor_runs_every_n_epochs_and_at_the_last_and_beats_chance(lab_env):
    sd = load_stage_data("sample", 24, progress=False)
    monitor = knn_monitor(sd, every=2, last_epoch=5, batch_size=64, device="cpu")
    model = Wrapper(EdgeEncoder())
    runs = {epoch: monitor(model, epoch) for epoch in range(1, 6)}
    assert [e for e, out in runs.items() if out] == [2, 4, 5]
    assert runs[2]["knn_acc"] == runs[4]["knn_acc"]  # same features, same answer
    # measured: edges 0.158, colour 0.033; chance is 1/20
    assert runs[2]["knn_acc"] > 2 / len(sd.classes)  # edge orientations are well above chance
    assert monitor(Wrapper(ColourEncoder()), 2)["knn_acc"] < 2 / len(sd.classes)  # colour names no class here
    assert knn_monitor(sd, every=0, last_epoch=5, batch_size=64, device="cpu") is None


def test_monitor_is_off_for_a_folder_without_classes(lab_env, tmp_path):
    folder = plain_image_folder(tmp_path / "plain", 20)
    sd = load_stage_data(str(folder), 24, progress=False)
    assert knn_monitor(sd, every=1, last_epoch=3, batch_size=16, device="cpu") is None
