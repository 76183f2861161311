"""The stage spec is the one place a stage's parameters, inheritance, files and scraps are declared: the
notebooks, the Makefile and bin/stage.py must agree with it."""

import ast
import json

import papermill as pm
import pytest
import stage  # bin/stage.py

from conftest import REPO
from imgwang import spec
from imgwang.core.errors import ConfigError
from imgwang.stages import render
from imgwang.stages.plan import written_files
from imgwang.stages.resolve import resolve


@pytest.mark.parametrize("name", list(spec.STAGES))
def test_each_parameters_cell_is_the_one_the_spec_renders(name):
    """Names, defaults, types and docs cannot drift: `python -m imgwang.stages.render --write` rewrites them."""
    template = REPO / "notebooks" / spec.STAGES[name].notebook
    book = json.loads(template.read_text())
    cell = next(c for c in book["cells"] if "parameters" in c["metadata"].get("tags", []))
    assert "".join(cell["source"]) == render.parameters_source(name)
    # and papermill, which injects and documents them, reads the same names and defaults, then `config` (what
    # bin/stage.py injects: the resolved configuration)
    inspected = pm.inspect_notebook(str(template))
    assert list(inspected) == [*spec.STAGES[name].names, "config"]
    assert {k: ast.literal_eval(v["default"]) for k, v in inspected.items()} == {**spec.STAGES[name].defaults(), "config": {}}


def test_the_makefile_passes_every_make_variable_of_the_spec():
    line = next(x for x in (REPO / "Makefile").read_text().splitlines() if x.startswith("STAGE_VARS :="))
    assert sorted(line.split(":=")[1].split()) == sorted(v.name for v in spec.make_vars())


def test_make_words_are_the_same_options():
    args = stage.parse_args(["transfer", "EPOCHS=3", "FROM=none", "--data", "sample", "-p", "note", "A=B"])
    assert (args.epochs, args.from_version, args.data, args.p) == ("3", "none", "sample", [["note", "A=B"]])
    with pytest.raises(ConfigError, match="unknown variable EPOCH"):
        stage.parse_args(["pretrain", "EPOCH=3"])


def test_resolve_fills_the_data_dependent_defaults_of_the_spec():
    for name, st in spec.STAGES.items():
        for real, data in enumerate(("sample", "imagewang")):
            cfg = resolve(name, {**st.defaults(), "data": data})
            assert all(cfg[p.name] == p.by_data[real] for p in st.params if p.by_data)
    assert resolve("transfer", {"data": "sample", "epochs": 7})["epochs"] == 7  # a given value wins
    with pytest.raises(ConfigError, match="KNN_T=-1 must be positive"):
        resolve("evaluate", {"knn_t": -1})


def _record(run_dir, **stages):
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"stages": {s: {"config": c} for s, c in stages.items()}}))


def test_later_stages_inherit_by_the_spec_and_a_given_value_wins(tmp_path):
    _record(tmp_path / "v1", pretrain={"arch": "tinyconv", "data": "sample", "size": 32})
    _record(tmp_path / "v2", transfer={"arch": "tinyconv", "data": "sample", "size": 40, "from_version": "v1", "seed": 2})
    t = resolve("transfer", {"from_version": "v1"}, runs_dir=tmp_path, version="v3")
    assert (t["arch"], t["data"], t["size"]) == ("tinyconv", "sample", 64)  # size is not inherited by transfer
    with pytest.raises(ConfigError, match="ARCH=resnet18 but the pretrain stage of v1 used tinyconv"):
        resolve("transfer", {"from_version": "v1", "arch": "resnet18"}, runs_dir=tmp_path, version="v3")
    e = resolve("evaluate", {}, runs_dir=tmp_path, version="v2")
    assert (e["size"], e["from_version"], e["bs"]) == (40, "v1", 64)
    assert e["seed"] == 2 and resolve("evaluate", {"seed": 5}, runs_dir=tmp_path, version="v2")["seed"] == 5  # the
    # random-init reference is the version's seed's unless SEED says otherwise
    assert resolve("evaluate", {"size": 48}, runs_dir=tmp_path, version="v2")["size"] == 48
    assert "from_version" not in resolve("review", {}, runs_dir=tmp_path, version="v2")


def test_force_moves_the_files_the_spec_says_a_stage_writes(tmp_path):
    for name in ("02-transfer.ipynb", "classifier.pt", "checkpoints/transfer-0/last.pt", "checkpoints/pretrain/x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    files = written_files(tmp_path, spec.STAGES["transfer"])
    assert files == ["02-transfer.ipynb", "classifier.pt", "checkpoints/transfer-0"]  # not pretrain's checkpoints


def test_scraps_are_read_only_by_the_names_a_stage_declares():
    scraps = spec.Scraps("transfer", {"val_acc": 0.5})
    assert scraps.get("val_acc") == 0.5 and scraps.get("val_accs") is None
    with pytest.raises(KeyError, match="transfer glues no scrap 'val_accuracy'"):
        scraps.get("val_accuracy")
    assert spec.scrap_stage("pretrain_history") == "pretrain"

