"""Progress bars that stay readable in a saved notebook.

tqdm's Jupyter widget keeps its state in the live front end only, so a reopened run showed bars frozen at 0%.
A text bar on stdout is part of the cell's saved output; Jupyter draws its carriage returns as overwrites, so
the saved notebook shows each bar's final state. Updates come at most every `mininterval` seconds, which keeps
the saved text (and the terminal log papermill writes from it) short.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def text_bar(iterable=None, **options) -> tqdm:
    options.setdefault("file", sys.stdout)  # looked up per call: the kernel's stdout in a notebook
    options.setdefault("mininterval", 5.0)
    options.setdefault("ncols", 100)
    return tqdm(iterable, **options)
