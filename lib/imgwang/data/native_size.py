"""How large a folder's images are, from a few file headers, and a warning when SIZE would upsample them.

A folder of 32 px images (a CIFAR-like set) run at a folder's default SIZE of 128 is upsampled four times: every
step then costs sixteen times the arithmetic of SIZE=32 and no detail is added. The known downloads declare their
side (imagewang.STORED_SIDE); for any other folder the side is the median shorter side of up to `SAMPLED` images
spread evenly over the sorted list, read from their headers (PIL decodes no pixels to give a size), so the check
costs milliseconds on any folder.
"""

from __future__ import annotations

import statistics

from PIL import Image

SAMPLED = 64


def median_short_side(paths, most: int = SAMPLED) -> tuple[int | None, int]:
    """(median shorter side in pixels, images it was read from) over up to `most` of `paths`, evenly spaced;
    the side is None when none can be read."""
    paths = list(paths)
    step = max(1, len(paths) // most)
    sides = []
    for path in paths[::step][:most]:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue  # the cache names unreadable files with their reason
    return (int(statistics.median(sides)) if sides else None), len(sides)


def folder_upsampling_warning(data: str, paths, size: int) -> str | None:
    """A warning when most images of a folder are smaller than SIZE, with the SIZE that keeps their detail."""
    side, n_read = median_short_side(paths)
    if side is None or size <= side:
        return None
    return (f"warning: SIZE={size} is above the {side} px shorter side of most images in DATA={data} (the median of "
            f"{n_read} sampled): they are upsampled {size / side:.1f}x, which costs "
            f"{(size / side) ** 2:.0f}x the compute of SIZE={side} and adds no detail: SIZE={side} or less")
