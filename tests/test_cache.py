"""The decode-once cache: odd-but-valid files become RGB rows, broken files are skipped with a reason,
reuse without decoding, rebuild on change, and no half-built cache ever loads."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgwang.data.cache as cache_mod
from imgwang.core.errors import DataError
from imgwang.data.cache import build_cache
from imgwang.data.images import BadImageError, load_rgb

S = 16


def _gradient(w=40, h=30):
    """An RGB image with distinct channels and structure (so crops, flips and channel mix-ups show)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 60)], -1).astype(np.uint8)


@pytest.fixture()
def odd_folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rgb = _gradient()
    Image.fromarray(rgb).save(d / "good1.JPEG", quality=95)
    Image.fromarray(rgb[::-1].copy()).save(d / "good2.JPEG", quality=95)
    Image.fromarray(np.full((30, 40), 128, np.uint8), "L").save(d / "gray.JPEG")
    # CMYK JPEG of pure cyan (C=255): as RGB it must be (0, 255, 255)-ish
    cmyk = np.zeros((30, 40, 4), np.uint8)
    cmyk[..., 0] = 255
    Image.fromarray(cmyk, "CMYK").save(d / "cmyk.JPEG", quality=95)
    # palette PNG: red on the left half, fully transparent on the right half -> white there
    pal = Image.new("P", (40, 30), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (20, 0, 40, 30))
    pal.info["transparency"] = 1
    pal.save(d / "palette_alpha.png", transparency=1)
    # a PNG named .JPEG (ImageNet has those): solid green
    Image.new("RGB", (40, 30), (0, 200, 0)).save(d / "png_in_disguise.JPEG", format="PNG")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    (d / "truncated.JPEG").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (d / "empty.JPEG").write_bytes(b"")
    (d / "notes.jpg").write_text("this is not an image\n")
    return d


def test_odd_files_become_rgb_rows_and_broken_ones_are_skipped(odd_folder, tmp_path):
    paths = list(odd_folder.iterdir())
    cache = build_cache(paths, S, tmp_path / "cache", progress=False)

    assert cache.array.shape == (6, 3, S, S) and cache.array.dtype == np.uint8 and len(cache) == 6
    assert {p.name for p, _ in cache.skipped} == {"truncated.JPEG", "empty.JPEG", "notes.jpg"}
    reasons = {p.name: r for p, r in cache.skipped}
    assert "truncated" in reasons["truncated.JPEG"]
    assert "empty" in reasons["empty.JPEG"]
    assert "not an image" in reasons["notes.jpg"]
    assert cache.row_of(odd_folder / "notes.jpg") is None

    def row(name):
        return cache.array[cache.row_of(odd_folder / name)].astype(int)

    gray = row("gray.JPEG")
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all() and abs(gray.mean() - 128) < 3
    cyan = row("cmyk.JPEG").reshape(3, -1).mean(1)
    assert cyan[0] < 30 and cyan[1] > 225 and cyan[2] > 225, cyan
    pal = row("palette_alpha.png")  # centre crop 30x30 of 40x30: columns 5..35, red then white from 20
    left, right = pal[:, :, : S // 3], pal[:, :, -S // 3 :]
    assert (left[0] > 240).all() and (left[1] < 15).all() and (left[2] < 15).all()
    assert (right > 240).all()  # transparent -> white, not the palette's blue
    green = row("png_in_disguise.JPEG")
    assert (green[1] == 200).all() and (green[0] == 0).all()
    # a good JPEG keeps its layout: red grows left->right, green top->bottom, blue flat
    good = row("good1.JPEG")
    assert good[0, :, -1].mean() > good[0, :, 0].mean() + 100
    assert good[1, -1, :].mean() > good[1, 0, :].mean() + 100
    assert (good[0] - row("good2.JPEG")[0]).__abs__().mean() < 8  # flipped vertically: same red

    report = cache.report()
    assert "6 of 9" in report and "truncated.JPEG" in report
    assert (tmp_path / "cache" / f"{cache.key}.skipped.txt").read_text().strip() == report


def test_load_rgb_matches_pil_resize_and_raises_specific_error(tmp_path):
    big = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png", 24)
    # shorter side 48 -> 24, centre crop: the PIL reference of the same steps
    ref = Image.fromarray(big).resize((32, 24), Image.Resampling.BILINEAR).crop((4, 0, 28, 24))
    assert out.shape == (3, 24, 24)
    assert np.abs(out.astype(int) - np.asarray(ref).transpose(2, 0, 1)).mean() < 2.0
    # 16-bit grayscale is rescaled (not clipped to white)
    Image.fromarray(np.full((20, 20), 32768, np.uint16)).save(tmp_path / "deep.png")
    assert abs(int(load_rgb(tmp_path / "deep.png", 8)[0, 4, 4]) - 128) <= 1
    with pytest.raises(BadImageError) as e:
        load_rgb(tmp_path / "missing.jpg", 8)
    assert isinstance(e.value, DataError) and e.value.reason == "file not found"


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    """A portrait stored as sideways pixels with orientation 6 ("rotate 90 clockwise to view") decodes as the
    portrait a viewer shows: its red top half ends up on top, not on the left."""
    portrait = np.zeros((64, 32, 3), np.uint8)
    portrait[:32] = (255, 0, 0)  # red over the top half of the picture as taken
    sideways = Image.fromarray(portrait).rotate(90, expand=True)  # as the sensor stored it: red on the left
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    sideways.save(tmp_path / "plain.jpg", quality=95)
    upright_red = load_rgb(tmp_path / "phone.jpg", 32)[0].astype(int)  # the centre 32 x 32: red on its top half
    stored_red = load_rgb(tmp_path / "plain.jpg", 32)[0].astype(int)  # no tag: as stored, red on its left half
    top_right, bottom_left = (slice(0, 8), slice(24, 32)), (slice(24, 32), slice(0, 8))
    assert upright_red[top_right].mean() > 200 and upright_red[bottom_left].mean() < 50
    assert stored_red[bottom_left].mean() > 200 and stored_red[top_right].mean() < 50


def test_reuse_does_not_decode_and_changes_rebuild(odd_folder, tmp_path, monkeypatch):
    paths = list(odd_folder.iterdir())
    first = build_cache(paths, S, tmp_path / "c", progress=False)

    def must_not_decode(*a, **k):
        raise AssertionError("decoded again although the cache matches")

    monkeypatch.setattr(cache_mod, "load_rgb", must_not_decode)
    again = build_cache(list(reversed(paths)), S, tmp_path / "c", progress=False)
    assert again.key == first.key and np.array_equal(again.array, first.array)
    monkeypatch.undo()

    resized = build_cache(paths, S + 4, tmp_path / "c", progress=False)
    assert resized.key != first.key and resized.array.shape[-1] == S + 4

    Image.new("RGB", (20, 20), (9, 9, 9)).save(odd_folder / "new.JPEG")
    grown = build_cache(list(odd_folder.iterdir()), S, tmp_path / "c", progress=False)
    assert grown.key != first.key and len(grown) == len(first) + 1
    assert (grown.array[grown.row_of(odd_folder / "new.JPEG")] == 9).all()


def test_interrupted_build_leaves_nothing_that_loads(odd_folder, tmp_path, monkeypatch):
    paths = sorted(odd_folder.iterdir())
    calls = []
    real = cache_mod.load_rgb

    def dies_on_third(path, size):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill mid-build
        return real(path, size)

    monkeypatch.setattr(cache_mod, "load_rgb", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_cache(paths, S, tmp_path / "c", progress=False)
    assert [p.name for p in (tmp_path / "c").iterdir()] == []  # no data, no json, no tmp left

    # a kill after the data rename but before the json: the data file alone never loads as a cache
    monkeypatch.undo()
    good = build_cache(paths, S, tmp_path / "c", progress=False)
    meta = tmp_path / "c" / f"{good.key}.json"
    meta.unlink()
    seen = []
    monkeypatch.setattr(cache_mod, "load_rgb", lambda p, s: seen.append(p) or real(p, s))
    rebuilt = build_cache(paths, S, tmp_path / "c", progress=False)
    assert len(seen) == len(paths) and np.array_equal(rebuilt.array, good.array)
    # a json whose data file is short (torn write) is not trusted either
    data = tmp_path / "c" / f"{good.key}.u8"
    os.truncate(data, data.stat().st_size - 1)
    seen.clear()
    build_cache(paths, S, tmp_path / "c", progress=False)
    assert len(seen) == len(paths)
    assert json.loads(meta.read_text())["key"] == good.key


def test_worker_pool_build_matches_in_process_build(tmp_path, monkeypatch):
    d = tmp_path / "many"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    monkeypatch.setattr(cache_mod, "POOL_MIN_IMAGES", 1)
    monkeypatch.setattr(cache_mod, "CHUNK", 8)
    pooled = build_cache(list(d.iterdir()), 12, tmp_path / "pool", progress=False, workers=2)
    single = build_cache(list(d.iterdir()), 12, tmp_path / "one", progress=False, workers=1)
    assert len(pooled) == 40 and [p.name for p, _ in pooled.skipped] == ["broken.jpg"]
    assert np.array_equal(pooled.array, single.array) and pooled.paths == single.paths
    assert not pooled.array.flags.writeable and isinstance(pooled.array, np.memmap)


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="no image files"):
        build_cache([], S, tmp_path / "c", progress=False)
    (tmp_path / "x.jpg").write_text("nope")
    with pytest.raises(DataError, match="none of the 1 files"):
        build_cache([tmp_path / "x.jpg"], S, tmp_path / "c", progress=False)


def test_a_script_without_a_main_guard_builds_with_the_pool(tmp_path):
    """Researchers' scripts rarely have `if __name__ == "__main__"`: the worker pool must not re-run them."""
    import subprocess
    import sys

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(300):  # above POOL_MIN_IMAGES, so the pool is used
        Image.fromarray(np.full((12, 16, 3), i % 256, np.uint8)).save(folder / f"{i:03d}.jpg")
    script = tmp_path / "build.py"
    script.write_text(
        "from pathlib import Path\nfrom imgwang.data.cache import build_cache\n"
        f"c = build_cache(sorted(Path({str(folder)!r}).glob('*.jpg')), 8, Path({str(tmp_path / 'cache')!r}), progress=False)\n"
        "print('rows', len(c))\n")
    lib = Path(__file__).resolve().parents[1] / "lib"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(lib)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["rows", "300"]  # printed once: the script ran once


def test_a_decode_worker_that_dies_fails_the_build_within_seconds(tmp_path, monkeypatch):
    """A worker killed outright (as the OOM killer does) must not leave the build waiting forever."""
    import signal
    import time

    d = tmp_path / "many"
    d.mkdir()
    for i in range(24):
        Image.fromarray(np.full((12, 16, 3), i, np.uint8)).save(d / f"{i:03d}.png")
    (d / "kill-me.png").write_bytes(b"x")
    real = cache_mod.load_rgb

    def dies_on_the_special_file(path, size):  # forked workers inherit this patch
        if Path(path).name == "kill-me.png":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, size)

    monkeypatch.setattr(cache_mod, "load_rgb", dies_on_the_special_file)
    monkeypatch.setattr(cache_mod, "POOL_MIN_IMAGES", 1)
    monkeypatch.setattr(cache_mod, "CHUNK", 4)
    start = time.time()
    with pytest.raises(DataError, match="decoding worker died") as info:
        build_cache(list(d.iterdir()), 8, tmp_path / "c", progress=False, workers=2)
    assert time.time() - start < 30 and "\n" not in str(info.value)
    assert list((tmp_path / "c").iterdir()) == []  # no cache, no temporary file


def test_temp_files_of_dead_builds_are_removed_and_live_ones_kept(odd_folder, tmp_path):
    import subprocess
    import sys

    cache_dir = tmp_path / "c"
    cache_dir.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = cache_dir / f"0123abcd.{int(gone.stdout)}.u8.tmp"
    live = cache_dir / f"0123abcd.{os.getpid()}.u8.tmp"
    for p in (dead, live):
        p.write_bytes(b"\0" * 100)
    build_cache(sorted(odd_folder.iterdir()), S, cache_dir, progress=False)
    assert not dead.exists() and live.exists()


def test_a_cache_too_big_for_the_disk_is_one_line_before_decoding(odd_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    monkeypatch.setattr(cache_mod, "load_rgb", lambda p, s: pytest.fail("decoded despite no room"))
    with pytest.raises(DataError, match=r"needs 0.00 GB, only 0.00 GB free .*use a smaller SIZE"):
        build_cache(sorted(odd_folder.iterdir()), 64, tmp_path / "c", progress=False)
