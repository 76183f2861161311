"""What a saved notebook holds: each progress bar once, finished; scraps without the kernel's NaN warning."""

import nbformat

from imgwang.core.progress import settle_bars


def test_settle_bars_keeps_each_bar_once_in_its_final_state(tmp_path):
    stream = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in (
        "\rdecoding:   0%| | 0/9", "\rdecoding: 100%| | 9/9", "\nstarting\n", "\repoch 1/2:  50%| | 1/2",
        "\repoch 1/2: 100%| | 2/2", "\n", "epoch 1/2  loss 0.5\n")]
    cell = nbformat.v4.new_code_cell("run()", outputs=[*stream, nbformat.v4.new_output("stream", name="stderr", text="warn\n"),
                                                       nbformat.v4.new_output("display_data", data={"text/plain": "fig"})])
    path = tmp_path / "run.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    settle_bars(path)
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream", "stream", "display_data"]
    assert outputs[0].text == "decoding: 100%| | 9/9\nstarting\nepoch 1/2: 100%| | 2/2\nepoch 1/2  loss 0.5\n"
    settle_bars(tmp_path / "missing.ipynb")  # a notebook papermill never wrote: nothing to do
    assert not (tmp_path / "missing.ipynb").exists()


def test_scraps_carry_nan_as_the_kernel_would_without_its_warning():
    import json

    import numpy as np
    import torch

    from imgwang.notebook import to_plain

    plain = to_plain({"std": float("nan"), "accs": np.array([0.5, np.inf]), "t": torch.tensor(-np.inf), 1: [float("nan")]})
    assert plain == {"std": "nan", "accs": [0.5, "inf"], "t": "-inf", "1": ["nan"]}
    json.dumps(plain, allow_nan=False)  # what the kernel's packer asks for: no fallback, no warning


def saved_stage_notebook(path, template: str, scraps: dict):
    """The template as papermill saves it: its cells, the injected parameters after the tagged cell, scraps glued."""
    from test_runs import fake_executed_notebook

    from conftest import REPO

    fake_executed_notebook(path, scraps)
    glued = nbformat.read(path, as_version=4).cells[0]
    book = nbformat.read(REPO / "notebooks" / template, as_version=4)
    at = next(i for i, c in enumerate(book.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell('epochs = 1\n', metadata={"tags": ["injected-parameters"]})
    book.cells = [*book.cells[:at + 1], injected, *book.cells[at + 1:], glued]
    nbformat.write(book, path)


TRANSFER = {"config": {"size": 128, "epochs": 5, "arch": "xresnet34", "data": "imagewang", "split": "val"},
            "from_version": "none", "val_acc": 0.7012, "val_acc_std": 0.004, "val_accs": [0.7, 0.705, 0.697, 0.70, 0.704],
            "transfer_wall_s": 600.0}


def test_a_saved_notebook_opens_on_its_answer_and_papermill_still_finds_its_parameters(tmp_path):
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from imgwang.stages.summary import SUMMARY_TAG, open_on_answer

    path = tmp_path / "runs" / "v1" / "02-transfer.ipynb"
    saved_stage_notebook(path, "02-transfer.ipynb", TRANSFER)
    assert open_on_answer(path) and open_on_answer(path)  # twice: still one summary
    book = nbformat.read(path, as_version=4)
    assert book.cells[0].source.startswith("# 02") and SUMMARY_TAG in book.cells[1].metadata["tags"]
    assert sum(SUMMARY_TAG in c.metadata.get("tags", []) for c in book.cells) == 1
    summary = book.cells[1].source
    assert "**128 px, 5 fine-tuning epochs, xresnet34, from none: val top-1 70.12% ± 0.40 over 5 runs" in summary
    assert "leaderboard best at 128 px / 5 epochs: 72.94%" in summary and "random-init baseline" in summary
    assert "[Result in leaderboard form](#Result-in-leaderboard-form)" in summary
    params = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    assert params.metadata["jupyter"]["source_hidden"] is True and "freeze_epochs" in params.source  # folded, kept
    injected = next(c for c in book.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert not injected.metadata.get("jupyter", {}).get("source_hidden")  # what this run changed stays in view
    again = parameterize_notebook(load_notebook_node(str(path)), {"epochs": 3})  # run again from the saved copy: papermill finds the tag
    tags = [c.metadata.get("tags", []) for c in again.cells]
    at = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[at + 1] and "epochs = 3" in again.cells[at + 1].source


def test_a_stopped_stage_says_so_on_top_and_summarises_what_it_glued(tmp_path):
    from imgwang.stages.summary import open_on_answer

    path = tmp_path / "runs" / "v2" / "03-evaluate.ipynb"
    saved_stage_notebook(path, "03-evaluate.ipynb", {})
    open_on_answer(path, "failed", "DataError: no images\nTraceback ...")
    summary = nbformat.read(path, as_version=4).cells[1].source
    assert "**This stage failed**: DataError: no images." in summary and "(nothing glued yet)" in summary
    assert not open_on_answer(tmp_path / "missing.ipynb")  # papermill never wrote it: nothing to do


def test_heading_anchors_are_jupyterlabs():
    from imgwang.stages.summary import anchor

    assert anchor("Scraps for later stages and `make compare`") == "Scraps-for-later-stages-and-make-compare"
    assert anchor("Frozen encoder: kNN and linear probe") == "Frozen-encoder:-kNN-and-linear-probe"
