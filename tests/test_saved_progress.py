"""Progress bars in a saved notebook: one line per bar, in its final state, whatever viewer opens it."""

import nbformat

from imgwang.progress import settle_bars


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
