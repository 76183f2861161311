"""imgwang.evaluate.shortcuts on fixed inputs: what neighbours share (class, colour statistics, another space's
neighbours), and bin/neighbour_shortcuts.py's refusal of versions it cannot compare."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import gen
from imgwang.data.sample import make_sample, nuisance_values, scene_of
from imgwang.evaluate.neighbours import nearest
from imgwang.evaluate.shortcuts import image_statistics, neighbour_overlap, same_class_share, statistic_ratio


def coloured_images(n: int, seed: int = 0) -> torch.Tensor:
    """n images of a random colour and a random contrast each (a checkerboard of that amplitude per channel)."""
    colours = 0.2 + 0.6 * torch.rand(n, 3, 1, 1, generator=gen(seed))
    contrast = 0.2 * torch.rand(n, 3, 1, 1, generator=gen(seed + 1))
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0
    return colours + contrast * checker


def test_statistics_are_each_channels_mean_then_its_spread():
    image = torch.zeros(1, 3, 4, 4)
    image[0, 0] = 0.5
    image[0, 2, :2] = 1.0  # half the blue channel lit
    stats = image_statistics(image)[0]
    assert torch.allclose(stats[:3], torch.tensor([0.5, 0.0, 0.5]))
    assert stats[3] == 0 and stats[4] == 0 and stats[5] > 0.5


def test_neighbours_found_by_colour_are_close_in_colour_and_random_ones_are_not():
    train, query = coloured_images(1000, seed=0), coloured_images(50, seed=2)
    train_stats, query_stats = image_statistics(train), image_statistics(query)
    mean, std = train_stats.mean(0), train_stats.std(0)
    by_colour = nearest((train_stats - mean) / std, (query_stats - mean) / std, k=5)
    by_chance = nearest(torch.randn(1000, 16, generator=gen(3)), torch.randn(50, 16, generator=gen(4)), k=5)
    assert statistic_ratio(train_stats, query_stats, by_colour) < 0.5
    assert 0.8 < statistic_ratio(train_stats, query_stats, by_chance) < 1.2


def test_same_class_share_counts_the_neighbours_of_the_querys_class():
    train_labels, query_labels = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1])
    idx = torch.tensor([[0, 1], [0, 2]])  # query 0: two of its class; query 1: one of two
    assert same_class_share(train_labels, query_labels, idx) == pytest.approx(0.75)


def test_overlap_is_one_for_the_same_neighbours_and_zero_for_disjoint_ones():
    a = torch.tensor([[0, 1, 2], [3, 4, 5]])
    assert neighbour_overlap(a, a.flip(1)) == 1.0  # order does not matter
    assert neighbour_overlap(a, a + 6) == 0.0
    assert neighbour_overlap(a, torch.tensor([[0, 1, 9], [9, 9, 9]])) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="shapes"):
        neighbour_overlap(a, a[:, :2])


def load_script():
    path = Path(__file__).resolve().parents[1] / "bin" / "neighbour_shortcuts.py"
    spec = importlib.util.spec_from_file_location("neighbour_shortcuts", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_script_refuses_a_version_without_an_encoder_in_one_line(tmp_path, capsys):
    script = load_script()
    assert script.main(["--version", "v9", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "v9" in err[0]


def test_the_script_names_the_sample_draw_that_neighbours_share(tmp_path, capsys):
    """Neighbours found by exposure alone (20 of 120: a sixth of the range) share exposure, not the object's place."""
    script = load_script()
    root = make_sample(tmp_path / "s", seed=1, n_train=6, n_unsup=0, n_val=6, image_size=(16, 24))
    paths = sorted((root / "train").rglob("*.*")) + sorted((root / "val").rglob("*.*"))
    fit, score = list(range(120)), list(range(120, len(paths)))
    exposure = torch.tensor([[nuisance_values(scene_of(root, p)[1])["exposure"]] for p in paths])
    by_exposure = (exposure[score] - exposure[fit].T).abs().topk(20, largest=False).indices
    sd = SimpleNamespace(root=root, cache=SimpleNamespace(paths=paths))
    script.print_shared_nuisances(sd, fit, score, {"by exposure": by_exposure})
    header, _, row = capsys.readouterr().out.strip().splitlines()[-3:]
    ratios = dict(zip(header.strip("| ").split(" | ")[1:], (float(r) for r in row.strip("| ").split(" | ")[1:])))
    assert ratios["exposure"] < 0.25 and ratios["centre x"] > 0.7 and ratios["object hue"] > 0.7
