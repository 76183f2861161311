"""Decode one image file robustly into a square uint8 RGB array (the unit the cache stores).

ImageNet-derived folders hold grayscale, CMYK, palette and PNG-in-JPEG files and the odd truncated
one. `load_rgb` turns every readable file into the same thing, (3, S, S) uint8 RGB: shorter side resized
to S (antialiased), centre-cropped; anything unreadable raises `BadImageError` with a short reason, so
the cache can skip it and say why. PIL detects the format from the bytes, never from the extension. A photo
whose EXIF says how the camera was held (phones store portraits as sideways pixels plus an orientation tag) is
turned upright first, as every image viewer shows it: otherwise a folder of phone photos mixes orientations,
and a rotation pretext task or a look at the review grids would see them sideways.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import DataError


class BadImageError(DataError):
    """A file that cannot be decoded as an image; `.reason` is a short human-readable cause."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def load_rgb(path, size: int) -> np.ndarray:
    """Decode `path` to a (3, size, size) uint8 RGB array: shorter side -> size, then a centre crop."""
    path = Path(path)
    try:
        if os.path.getsize(path) == 0:
            raise BadImageError(path, "empty file (0 bytes)")
        with Image.open(path) as img:
            _draft_for(img, size)
            img.load()  # decode now, so truncation surfaces here and not later
            rgb = to_rgb(upright(img))
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(path, "file not found") from None
    except PermissionError:
        raise BadImageError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image format PIL can read") from None
    except Image.DecompressionBombError as e:
        raise BadImageError(path, f"too many pixels ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            raise BadImageError(path, f"truncated image data ({msg})") from None
        raise BadImageError(path, f"corrupt image data ({msg})") from None
    return square_crop_resize(rgb, size)


def _draft_for(img: Image.Image, size: int) -> None:
    """Let the JPEG decoder downscale by 1/2, 1/4 or 1/8 while the shorter side stays >= size (much faster)."""
    if img.format != "JPEG":
        return
    w, h = img.size
    scale = size / min(w, h)
    if scale < 1:
        img.draft(None, (math.ceil(w * scale), math.ceil(h * scale)))


EXIF_ORIENTATION = 0x0112  # 1: as stored; 2-8: mirrored and/or rotated


def upright(img: Image.Image) -> Image.Image:
    """The image as its EXIF orientation says it was taken (most files have none: returned as they are)."""
    has_exif = "exif" in img.info or img.format == "TIFF"  # (a TIFF keeps it among its own tags)
    if not has_exif or img.getexif().get(EXIF_ORIENTATION, 1) in (0, 1):  # parse EXIF only where there is some
        return img
    return ImageOps.exif_transpose(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white, 16-bit/float data rescaled."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        return _wide_gray_to_rgb(img)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def _wide_gray_to_rgb(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit: PIL's own convert would clip at 255, not rescale."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
        arr = arr / 257.0  # 0..65535 -> 0..255
    elif img.mode == "F" and arr.max(initial=0) <= 1.0:
        arr = arr * 255.0  # float images in [0, 1]
    gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def square_crop_resize(img: Image.Image, size: int) -> np.ndarray:
    """Resize the centred square of side min(w, h) to size x size in one antialiased step."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    return np.ascontiguousarray(np.asarray(out, dtype=np.uint8).transpose(2, 0, 1))
