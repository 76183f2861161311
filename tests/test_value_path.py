"""A value's road from bin/stage.py to the stage function (imgwang.stages.driver's docstring traces it): resolved
once, by the driver, and handed to the notebook as its `config` parameter, which start() takes as it is."""

import nbformat
import pytest
import stage  # bin/stage.py

from conftest import PIPELINE_VERSION, REPO, scraps, stages_of
from imgwang import notebook, runs
from imgwang.core.plain import to_plain
from imgwang.spec import PIPELINE, STAGES
from imgwang.stages import driver, kernel
from imgwang.stages import resolve as resolving

TINY = ["DATA=sample", "ARCH=tinyconv", "SIZE=32", "BS=32", "COMET=off"]


def test_a_pipeline_resolves_each_stage_once(lab_env, tmp_path, monkeypatch):
    calls = []
    real = resolving.resolve_with_task
    monkeypatch.setattr(resolving, "resolve_with_task", lambda stage, *a, **k: calls.append(stage) or real(stage, *a, **k))
    plans = driver.plan_all(stage.parse_args(["pipeline", "EPOCHS=2", *TINY, "--runs-dir", str(tmp_path)]), PIPELINE, REPO)
    assert calls == PIPELINE and plans[0].parameters["epochs"] == 2
    assert not any(tmp_path.iterdir())  # planning wrote nothing


def test_the_notebook_gets_the_resolved_configuration_and_reads_nothing_back(lab_env, tmp_path, monkeypatch):
    """driver.execute hands the notebook the configuration as its one parameter; start() returns it unchanged,
    without resolving again or reading run.json."""
    (plan,) = driver.plan_all(stage.parse_args(["pretrain", "EPOCHS=2", *TINY, "--runs-dir", str(tmp_path)]),
                              ["pretrain"], REPO)
    handed = {}
    monkeypatch.setattr(kernel, "run_notebook", lambda template, out, parameters, **k: handed.update(parameters)
                        or kernel.Outcome("done"))
    assert driver.execute(plan, REPO) == 0
    assert handed == {"config": to_plain(plan.parameters)} and handed["config"]["epochs"] == 2

    monkeypatch.setattr(notebook, "take_thread_share", lambda *a: None)
    monkeypatch.setattr(resolving, "resolve", lambda *a, **k: pytest.fail("resolved again"))
    monkeypatch.setattr(runs, "read_run_json", lambda *a, **k: pytest.fail("read back from run.json"))
    cfg, run_dir = notebook.start("pretrain", {**STAGES["pretrain"].defaults(), **handed})
    assert cfg == handed["config"] and run_dir == plan.run_dir


def test_the_executed_notebooks_hold_the_configuration_that_run_json_and_the_scrap_record(pipeline):
    run_dir = pipeline / PIPELINE_VERSION
    for name, record in stages_of(run_dir).items():
        book = run_dir / STAGES[name].notebook
        injected = next(c for c in nbformat.read(book, as_version=4).cells
                        if "injected-parameters" in c.metadata.get("tags", []))
        namespace = {}
        exec(injected.source, namespace)
        assert set(namespace) - {"__builtins__"} == {"config"}, name
        assert namespace["config"] == record["config"] == scraps(book)["config"], name
