"""Import every task module so each registers itself. Adding a task = a new file + a line here."""

from . import patchwork, unmix, scale, quadrant, transform, rotation, simclr, swav, dino, byol  # noqa: F401
