"""Progress bars that stay readable in a saved notebook.

tqdm's Jupyter widget keeps its state in the live front end only, so a reopened run showed bars frozen at 0%.
A text bar on stdout is part of the cell's saved output; Jupyter draws its carriage returns as overwrites, so
the saved notebook shows each bar's final state. Updates come at most every `mininterval` seconds, which keeps
the saved text (and the terminal log papermill writes from it) short.

The kernel sends each update as its own stream message, which papermill saves as its own output; JupyterLab
joins them when it opens the notebook, but other viewers (nbconvert, GitHub) would show every update on a line
of its own. `settle_bars` joins them in the saved file, so every viewer shows each bar once, finished.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def text_bar(iterable=None, **options) -> tqdm:
    options.setdefault("file", sys.stdout)  # looked up per call: the kernel's stdout in a notebook
    options.setdefault("mininterval", 5.0)
    options.setdefault("ncols", 100)
    return tqdm(iterable, **options)


def settle_bars(notebook_path) -> None:
    """Join each cell's consecutive stream outputs and keep only what the carriage returns leave (nbconvert's
    CoalesceStreamsPreprocessor: a bar's last state), in place, atomically. A missing file is left missing."""
    from pathlib import Path

    import nbformat
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    from .atomic import write_text

    path = Path(notebook_path)
    if not path.exists():
        return
    nb = nbformat.read(path, as_version=4)
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    write_text(path, nbformat.writes(nb))
