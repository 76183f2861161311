"""Every check proven over every kind of value: the one resolver (imgwang.stages.resolve) gets each parameter of
the stage spec with values of every kind, and either accepts it or refuses it with one ConfigError, never
another exception, and planning refuses before a run folder exists. Bounded and seeded: seconds, and the same
examples every run."""

import pytest
import stage  # bin/stage.py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO
from imgwang.core.errors import ConfigError
from imgwang.spec import STAGES
from imgwang.stages import driver
from imgwang.stages.resolve import resolve

BOUNDED = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))

SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),  # negative, huge, past every generator's seed range
    st.floats(allow_nan=True, allow_infinity=True),  # non-finite, fractional where a count is meant
    st.sampled_from(["", "0", "-1", "1e400", "nan", "inf", "ü", "../../etc", "/tmp/x", "cuda", "cuda:7", "mps",
                     "tpu", "cuda:x", "auto", "cpu", "online", "dev", "val", "rotation", "simclr", "none"]),
    st.text(max_size=12),  # unicode
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=6), SCALARS, max_size=2))
PARAMS = [(name, p.name) for name, spec in STAGES.items() for p in spec.params]
BASE = {"data": "sample", "arch": "tinyconv", "device": "cpu", "comet": "off"}


@BOUNDED
@given(where=st.sampled_from(PARAMS), value=VALUES)
def test_each_parameter_is_accepted_or_refused_in_one_line(where, value):
    stage_name, name = where
    try:
        cfg = resolve(stage_name, {**BASE, "from_version": "none", name: value})
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    spec = STAGES[stage_name]
    for p in spec.params:  # accepted: every value of the stage has its declared type
        if p.name in cfg and p.type is not list:
            assert isinstance(cfg[p.name], p.type), (p.name, cfg[p.name])


@BOUNDED
@given(task_params=st.dictionaries(st.sampled_from(["pct_pos", "patch_frac", "noise_p", "n_sources", "nope"]),
                                   SCALARS, max_size=3),
       task=st.sampled_from(["patchwork", "unmix", "rotation", "simclr", "swav"]))
def test_task_parameters_of_every_kind_are_accepted_or_refused_in_one_line(task, task_params):
    try:
        resolve("pretrain", {**BASE, "task": task, "task_params": task_params})
    except ConfigError as e:
        assert "\n" not in str(e)


TEXT_VALUES = st.one_of(st.sampled_from(["0", "-3", "1.5", "1e400", "nan", ".inf", "[1, 2]", "{a: 1}", "''", "true",
                                         "ü", "~", "null", "2147483648", "9" * 40]), st.text(max_size=10))


@settings(max_examples=12, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted({p.name for p in STAGES["transfer"].params if not p.internal} - {"data"})),
       text=TEXT_VALUES,
       version=st.sampled_from(["v1", "../escape", "/abs", "a/b", "..", ".v", "ü", "v 1", ""]))
def test_planning_refuses_before_any_run_folder_exists(lab_env, tmp_path_factory, name, text, version):
    """What bin/stage.py gets as words (`-p NAME VALUE`, VERSION=...): planned or refused with one ConfigError,
    and planning alone never creates a folder, inside runs/ or out of it."""
    root = tmp_path_factory.mktemp("plan")
    runs_dir = root / "runs"
    words = ["transfer", "FROM=none", "DATA=sample", "ARCH=tinyconv", "SIZE=16", "BS=8", "DEVICE=cpu",
             "--runs-dir", str(runs_dir), "-p", name, text] + ([f"VERSION={version}"] if version else [])
    try:
        args = stage.parse_args(words)
        driver.plan_all(args, ["transfer"], REPO)
        PLANNED.append(name)
    except ConfigError as e:
        assert "\n" not in str(e)
    assert sorted(p.name for p in root.rglob("*")) == []


PLANNED = []
ONE_WORKER = True  # PLANNED is filled by the test above and read by the one below: one worker, in order


def test_some_of_those_words_were_planned():
    """The examples above reached the end of planning too (not all refused at the first check)."""
    assert PLANNED


@pytest.mark.parametrize("value", ["cuda", "cuda:0", "cuda:99", "mps", "cuda:x", "gpu"])
def test_a_device_this_torch_cannot_use_is_refused(value):
    import torch

    usable = value in ("cuda", "cuda:0") and torch.cuda.is_available()
    if usable:
        assert resolve("review", {**BASE, "device": value})["device"] == value
    else:
        with pytest.raises(ConfigError, match="DEVICE"):
            resolve("review", {**BASE, "device": value})


def test_seeds_outside_the_generators_range_are_refused():
    assert resolve("review", {**BASE, "seed": 2**31 - 1})["seed"] == 2**31 - 1
    for bad in (2**31, 2**64, -1):
        with pytest.raises(ConfigError, match="SEED"):
            resolve("review", {**BASE, "seed": bad})


def test_the_notebook_takes_the_planned_configuration_as_it_is(lab_env, tmp_path, monkeypatch):
    """Under bin/stage.py the notebook's start() takes the configuration the driver injected; it resolves nothing."""
    from imgwang import notebook
    from imgwang.stages import resolve as resolving

    monkeypatch.setattr(notebook, "take_thread_share", lambda *a: None)
    cfg = resolve("pretrain", {**BASE, "task": "simclr"}, runs_dir=tmp_path, version="v1")
    monkeypatch.setattr(resolving, "resolve", lambda *a, **k: pytest.fail("resolved twice"))
    got, _ = notebook.start("pretrain", {**STAGES["pretrain"].defaults(), "config": cfg})
    assert got == cfg and list(got) == [n for n in STAGES["pretrain"].names if n in cfg]
