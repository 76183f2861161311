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
