"""Box geometry on batches: quadrant boxes, batched crops and masks (quadrant, scale), boxes kept apart
(patchwork's source and destination) and boxes resampled at sub-pixel corners (patchwork's patches). Index grids
on the images' device, no per-image Python."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .sampling import randint, uniform


def quadrant_boxes(q: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Quadrant index (0 TL, 1 TR, 2 BL, 3 BR) -> (top, left, height, width), all quadrants of equal size."""
    qh, qw = h // 2, w // 2
    top = (q // 2) * (h - qh)  # odd sizes: the bottom/right quadrants end at the border, same size
    left = (q % 2) * (w - qw)
    return torch.stack([top, left, torch.full_like(q, qh), torch.full_like(q, qw)], dim=1)


def crop_resize(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, crop: tuple[int, int],
                size: tuple[int, int]) -> torch.Tensor:
    """Cut a (crop_h, crop_w) box at each image's (top, left) and resize it to `size` (bilinear).

    One gather and one interpolate for the batch; the box size is a Python int pair, so nothing waits
    on the GPU (no per-image Python, no host sync).
    """
    ch, cw = crop
    b = images.shape[0]
    rows = top[:, None] + torch.arange(ch, device=images.device)  # (B, ch)
    cols = left[:, None] + torch.arange(cw, device=images.device)  # (B, cw)
    batch = torch.arange(b, device=images.device)[:, None, None]
    crops = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if (ch, cw) == tuple(size):
        return crops.contiguous()
    return F.interpolate(crops, size=size, mode="bilinear", align_corners=False)  # convex: stays in [0, 1]


def resample_boxes(images: torch.Tensor, index: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                   side: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, size, size): image `index[i]`'s square box of side `side[i]` pixels at the continuous top-left corner
    (`top[i]`, `left[i]`), resampled bilinearly, all in one grid_sample. A box of side `size` at whole-pixel
    corners comes out as an exact copy of its pixels; any other one is interpolated."""
    _, _, h, w = images.shape
    steps = (torch.arange(size, device=images.device, dtype=torch.float32) + 0.5) / size  # output pixel centres
    ys = top[:, None].float() + steps[None] * side[:, None].float()  # in pixel-edge units: pixel k's centre is k + 0.5
    xs = left[:, None].float() + steps[None] * side[:, None].float()
    b = index.shape[0]
    grid = torch.stack([(xs / w * 2 - 1)[:, None, :].expand(b, size, size),
                        (ys / h * 2 - 1)[:, :, None].expand(b, size, size)], dim=-1)
    return F.grid_sample(images[index].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def mask_outside(images: torch.Tensor, boxes: torch.Tensor, fill: float) -> torch.Tensor:
    """Keep each image's box, set every other pixel to `fill`."""
    _, _, h, w = images.shape
    ys = torch.arange(h, device=images.device)[None, :, None]
    xs = torch.arange(w, device=images.device)[None, None, :]
    top, left, bh, bw = (boxes[:, i, None, None] for i in range(4))
    inside = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw)  # (B, H, W)
    return torch.where(inside[:, None], images, torch.full_like(images, fill))


def valid_pairs(n: int, m: int) -> int:
    """Number of ordered pairs of positions in [0, n) at least m apart."""
    return max(0, n - m) * max(0, n - m + 1)


def separated_pair(n: int, m: int, count: int, generator, device):
    """`count` ordered pairs (d, q) of positions in [0, n) with |d - q| >= m, uniform over all such pairs."""
    pos = torch.arange(n, device=device)
    left, right = (pos - m + 1).clamp(min=0), (n - pos - m).clamp(min=0)  # valid q below / above each d
    cdf = (left + right).cumsum(0)
    u = uniform((count,), generator, device) * cdf[-1]
    d = torch.searchsorted(cdf, u, right=True).clamp(max=n - 1)
    v = (uniform((count,), generator, device) * (left + right)[d]).long()
    v = torch.minimum(v, (left + right)[d] - 1)
    q = torch.where(v < left[d], v, d + m + (v - left[d]))
    return d, q


def separated_corners(ny: int, nx: int, m: int, count: int, generator, device):
    """`count` pairs of top-left corners (dy, dx), (oy, ox) in an ny x nx grid, at least m apart along one axis.

    The separating axis is drawn weighted by its number of valid pairs, so the pair is uniform over all
    pairs of boxes of side m that do not overlap; along the other axis both corners share one uniform draw.
    """
    weight_y, weight_x = valid_pairs(ny, m), valid_pairs(nx, m)
    along_y = uniform((count,), generator, device) < weight_y / (weight_y + weight_x)
    py = separated_pair(ny, m, count, generator, device) if weight_y else None
    px = separated_pair(nx, m, count, generator, device) if weight_x else None
    free_y, free_x = randint(ny, (count,), generator, device), randint(nx, (count,), generator, device)
    if py is None:
        along_y = torch.zeros_like(along_y)
    if px is None:
        along_y = torch.ones_like(along_y)
    py, px = py or (free_y, free_y), px or (free_x, free_x)
    dy, oy = torch.where(along_y, py[0], free_y), torch.where(along_y, py[1], free_y)
    dx, ox = torch.where(along_y, free_x, px[0]), torch.where(along_y, free_x, px[1])
    return dy, dx, oy, ox
