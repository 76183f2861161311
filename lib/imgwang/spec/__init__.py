"""What each stage is, declared once: its notebook, its parameters (defaults, one-line docs, checks, Make
variables), what it inherits from the version's earlier stages, the files it needs and writes, the scraps it
glues.

Everything else reads this table: bin/stage.py (its options and `NAME=value` Make variables), the one
resolution of a configuration (stages/resolve.py), planning (stages/plan.py), the stage driver, distributed
runs and resume (`run`, `results`, `built_on`), `make help` and the notebooks' parameters cells
(stages/render.py; tests/test_spec.py keeps each cell equal), compare and the tasks table (`Scraps` refuses a
scrap name a stage does not declare). The spec is the bottom of the house: it imports only its own checks and
imgwang.core.errors (the standard library besides), so `make help` runs before the venv exists.

How to add a stage parameter
  1. Add one `Param` to the stage's `params` in STAGES below (a parameter several stages take: one constant
     above, listed in each). Give its name, default (what the parameters cell holds), type and a one-line doc;
     optionally `by_data=(sample, real data)` to fill an empty value (0 or "") by the data, `check` (a function
     of imgwang.spec.checks, called before compute; without one, a value must have the default's type) and
     `make="NAME"` for a Make variable.
  2. Rewrite the parameters cells from the spec: `python -m imgwang.stages.render --write`.
  3. Use it in the lib as `cfg["name"]`: the stage function receives every value resolved and checked.
  bin/stage.py then takes it as `-p name value`; run.json and the `config` scrap record it.

How to add a Make variable
  Give the parameter `make="NAME"` (step 1 above) and add NAME to STAGE_VARS in the Makefile (one word).
  bin/stage.py accepts `NAME=value` (what the Makefile passes) and `--name value`; `make help` lists it with
  its doc. A variable read by bin/stage.py itself, not by a notebook (FORCE, RESUME), is a `MakeVar` in
  RUN_VARS; bin/stage.py finds its value as `args.<name lower-cased>`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from . import checks


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    type: type
    doc: str
    by_data: tuple | None = None  # (sample, real data): fills an empty value (None, "", 0)
    check: Callable | None = None  # imgwang.spec.checks function (name, value) -> value; ConfigError when bad
    make: str | None = None  # Make variable that sets it (also bin/stage.py's NAME=value and --name)
    internal: bool = False  # set by bin/stage.py, not by `-p`
    setting: bool = True  # shapes the computation: a RESUME must keep it (not so: where the run lives, tracking)
    augment: str = ""  # the loader's augmentation: "loader" (a task that cuts its own views takes none of it) or
    # "views" (it applies to such a task's views too)


@dataclass(frozen=True)
class Inherit:
    """Keys a stage takes from the recorded config (run.json) of an earlier stage; for each key the first rule
    with a recorded value wins, a value given on the command line wins over all (or, with must_match, must
    agree)."""

    stage: str
    keys: tuple[str, ...]
    of: str = "self"  # "self": this version; "from": the version FROM names (from_version)
    must_match: bool = False


@dataclass(frozen=True)
class MakeVar:
    name: str
    doc: str
    dest: str  # parameter name, or bin/stage.py's own attribute


@dataclass(frozen=True)
class Stage:
    name: str
    notebook: str
    params: tuple[Param, ...]
    writes: tuple[str, ...]  # besides the notebook; FORCE=1 moves them aside (glob patterns allowed)
    scraps: tuple[str, ...]  # names glued by the notebook (figures included)
    inherits: tuple[Inherit, ...] = ()
    needs: tuple[tuple[str, str], ...] = ()  # (file in the version folder, stage that writes it)
    starts_version: bool = False  # run alone, it takes the next free version (later stages take the newest)
    makes_encoder: bool = False  # a FROM=none pipeline (the random-init baseline) skips it
    labelled: bool = True  # needs classes: refuses a plain folder of images
    built_on: tuple[str, ...] = ()  # earlier stages of the version whose results it reads (FORCE marks it stale)
    run: str = ""  # "module:function" running it, (cfg, run_dir, runs_dir) -> result (on every rank under torchrun)
    results: tuple[str, ...] = ()  # keys of that result rank 0 sends back to the kernel (plain values)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def defaults(self) -> dict:
        return {p.name: _copy(p.default) for p in self.params}


def _copy(value):
    return type(value)(value) if isinstance(value, (dict, list)) else value


# Parameters several stages take. `replace(X, ...)` gives a stage its own default or doc.
VERSION = Param("version", "", str, "run folder under runs/; empty: next free v<n> (pretrain) or the newest run",
                make="VERSION", internal=True, setting=False)
RUNS_DIR = Param("runs_dir", "runs", str, "where run folders live", internal=True, setting=False)
DATA = Param("data", "imagewang", str,
             "sample | imagewang | imagewang-320 | imagewang-full | path to a folder in Imagewang layout", make="DATA")
ARCH = Param("arch", "", str, "timm model name (random init) or tinyconv; empty: default for the data, resnet18 on "
             "sample, resnet34d otherwise", by_data=("resnet18", "resnet34d"), make="ARCH")
SIZE = Param("size", 0, int, "image side in pixels; 0: default for the data, 64 on sample, 128 otherwise",
             by_data=(64, 128), check=checks.positive_int, make="SIZE")
EPOCHS = Param("epochs", 0, int, "training epochs; 0: default for the stage and data", check=checks.positive_int,
               make="EPOCHS")
BS = Param("bs", 0, int, "batch size; 0: default", check=checks.positive_int, make="BS")
LR = Param("lr", 0.0, float, "peak learning rate (of the one-cycle schedule by default); 0: default", by_data=(2e-3, 2e-3),
           check=checks.positive_float, make="LR")
SEED = Param("seed", 0, int, "random seed, 0 to 2^31-1; transfer repeats use seed, seed+1, ...", check=checks.seed,
             make="SEED")
DEVICE = Param("device", "auto", str, "auto: cuda, then mps, then cpu | cpu | cuda | mps", make="DEVICE")
THREADS = Param("threads", 0, int, "CPU threads; 0: this stage's share, cores // stages running on this machine "
                "(at most 2 with cuda), looked at again each epoch (imgwang.core.threads)", check=checks.non_negative_int,
                make="THREADS")
COMET = Param("comet", "auto", str, "off | offline | online | auto: online when COMET_API_KEY is set, else offline",
              check=checks.comet_mode, make="COMET", setting=False)
RESUME = Param("resume", False, bool, "continue from the last complete epoch of an interrupted run", internal=True,
               setting=False)
SPLIT = Param("split", "", str, "scoring set of transfer and evaluate: val (the leaderboard protocol) | dev (a fixed, "
              "class-stratified fifth of train/ held out from fine-tuning, to tune without touching val/)",
              check=checks.split_name, make="SPLIT")
# Several processes and machines (imgwang.distributed): pretrain and transfer train under torchrun when more than
# one process takes part; the cross-checks (BS split evenly, MASTER with NNODES > 1) are stages/resolve.launch_rule.
NPROC = Param("nproc", 1, int, "processes on this machine, one per GPU; above 1 the stage trains under torchrun "
              "(BS stays the global batch)", check=checks.positive_int, make="NPROC")
NNODES = Param("nnodes", 1, int, "machines taking part, each running the same make command", check=checks.positive_int,
               make="NNODES")
NODE_RANK = Param("node_rank", 0, int, "this machine's number, 0 to NNODES-1; node 0 records and writes the run",
                  check=checks.non_negative_int, make="NODE_RANK")
MASTER = Param("master", "", str, "host:port of node 0, where the ranks meet (needed with NNODES > 1)", make="MASTER")
DISTRIBUTED = (NPROC, NNODES, NODE_RANK, MASTER)
# Training options (FitSettings.of takes them by name); their defaults are the lab's behaviour before they existed.
OPTIMIZER = Param("optimizer", "adamw", str, "adamw | adam | sgd | ranger (Lookahead over RAdam) | lars (imgwang.train.optim)",
                  check=checks.optimizer_name)
SCHEDULE = Param("schedule", "onecycle", str, "learning-rate schedule: onecycle | flat_cos (flat, then cosine to lr/1e5) "
                 "| cosine | constant", check=checks.schedule_name)
FLAT_FRAC = Param("flat_frac", 0.75, float, "flat_cos: share of the steps at the peak lr before the cosine",
                  check=checks.fraction)
WEIGHT_DECAY = Param("weight_decay", 0.05, float, "weight decay of kernels (none on biases and norms)",
                     check=checks.non_negative_float)
FROM = Param("from_version", "", str, "version whose encoder.pt to load; none: random init; empty: this version",
             make="FROM")
# The loader's augmentation (imgwang.data.loader_augment): fine-tuning's, and pretraining's for tasks that do not
# make their own views; flip_p and rotations also reach the views of those that do (imgwang.data.views). Defaults:
# the Imagewang leaderboard recipe, RandomResizedCrop(0.35-1) + horizontal flip (as every view-making method's paper).
AUGMENT = (
    Param("crop_scale", [0.35, 1.0], list, "[min, max] area fraction of the random crop, each in (0, 1]; [1, 1]: the "
          "whole image (aspect still 3/4-4/3)", check=checks.crop_scale, augment="loader"),
    Param("flip_p", 0.5, float, "probability of a horizontal flip (of each view, for tasks that make views); 0: never "
          "(digits, text: a flip changes them)",
          check=checks.probability, augment="views"),
    Param("rotations", [0], list, "rotations in degrees (multiples of 90, counter-clockwise), one drawn per image (per "
          "view, for tasks that make views); [0]: none; [0, 90, 180, 270]: any, for overhead or microscopy images",
          check=checks.quarter_turns, augment="views"),
)

STAGES = {
    "pretrain": Stage(
        "pretrain", "01-pretrain.ipynb",
        params=(
            VERSION, RUNS_DIR,
            replace(DATA, doc=DATA.doc + ", or to a plain folder of images (no classes needed to pretrain)"),
            ARCH, SIZE,
            Param("task", "patchwork", str, "pretext task: imgwang.tasks.task_names()", make="TASK"),
            Param("task_params", {}, dict,
                  "task-specific parameters, e.g. pct_pos for patchwork; from make: P with -p NAME VALUE"),
            replace(EPOCHS, by_data=(3, 20)), replace(BS, by_data=(64, 128), check=checks.training_batch), LR, SEED,
            DEVICE, THREADS, *DISTRIBUTED,
            COMET, RESUME,
            Param("knn_every", 1, int, "every N epochs and at the last, kNN accuracy of the frozen encoder on train/ "
                  "labels (half memory, half queries; val/ untouched); 0: off", check=checks.non_negative_int),
            Param("grad_stats", False, bool, "collect per-layer gradient statistics (bar chart below)"),
            OPTIMIZER, SCHEDULE, FLAT_FRAC, WEIGHT_DECAY,
            Param("pretrain_on_val", False, bool, "also pretrain on val/ images, without labels (as the 72.94% entry "
                  "did); every 10th image of train + unsup + val then measures the pretext task", check=checks.flag),
            *AUGMENT,
        ),
        writes=("encoder.pt", "encoder.safetensors", "pretext_model.pt", "checkpoints/pretrain"),
        scraps=("config", "task", "pretext_metric_name", "pretext_val_metric", "pretext_chance", "pretext_val_loss",
                "pretrain_history", "pretrain_images_per_s", "pretrain_wall_s", "pretrain_knn_acc",
                "pretrain_knn_init", "pretext_val_set", "task_examples", "pretrain_curves", "pretrain_knn", "grad_stats",
                "embedding_std", "embedding_std_floor", "pretrain_embedding_std",
                "pretrain_note"),  # the slow-start note, only when the run is shorter than the task needs
        starts_version=True, makes_encoder=True, labelled=False,
        run="imgwang.stages.pretrain:run_pretrain",
        results=("history", "val_metric", "val_loss", "images_per_s", "knn_acc", "knn_acc_init", "wall_s", "chance",
                 "train_chance", "note"),
    ),
    "transfer": Stage(
        "transfer", "02-transfer.ipynb",
        params=(
            VERSION, RUNS_DIR, DATA, ARCH, SIZE, FROM,
            replace(EPOCHS, by_data=(5, 5)), replace(BS, by_data=(32, 64), check=checks.training_batch), LR,
            Param("runs", 1, int, "repeats with different seeds (leaderboard: 5 runs at 5 epochs)",
                  check=checks.positive_int, make="RUNS"),
            Param("freeze_epochs", 0, int, "train only the head and the encoder's norm layers (as fastai) for the first N epochs",
                  check=checks.non_negative_int),
            Param("head_lr_mult", 1.0, float, "the head learns at lr times this", check=checks.positive_float),
            OPTIMIZER, SCHEDULE, FLAT_FRAC, WEIGHT_DECAY,
            Param("label_smoothing", 0.0, float, "cross-entropy label smoothing", check=checks.fraction),
            Param("head_dropout", 0.25, float, "fastai head: dropout p/2 before its first linear layer, p before the "
                  "last", check=checks.fraction),
            *AUGMENT,
            replace(SPLIT, default="val"),
            SEED, DEVICE, THREADS, *DISTRIBUTED, COMET, RESUME,
        ),
        writes=("classifier.pt", "checkpoints/transfer-*"),
        scraps=("config", "from_version", "val_acc", "val_acc_std", "val_accs", "transfer_history",
                "transfer_histories", "train_bs", "steps_per_epoch", "transfer_wall_s", "transfer_curves",
                "train_examples"),
        # the encoder's architecture is fixed by the pretrain run that made it
        inherits=(Inherit("pretrain", ("arch",), of="from", must_match=True), Inherit("pretrain", ("data",)),
                  Inherit("pretrain", ("data",), of="from")),
        built_on=("pretrain",),  # when FROM is this version
        run="imgwang.stages.transfer:run_transfer", results=("val_accs", "val_acc", "val_acc_std", "histories", "wall_s"),
    ),
    "evaluate": Stage(
        "evaluate", "03-evaluate.ipynb",
        params=(
            VERSION, RUNS_DIR, DATA, ARCH, SIZE,
            replace(FROM, doc="whose pretrained encoder the kNN / probe rows test; empty: as in transfer"),
            replace(BS, by_data=(64, 128)),
            Param("knn_k", 20, int, "neighbours for kNN", check=checks.positive_int),
            Param("knn_t", 0.07, float, "temperature of the kNN vote weights", check=checks.positive_float),
            Param("probe_folds", 5, int, "most cross-validation folds that choose the linear probe's L2 strength on "
                  "train (fewer when a class has fewer train images)", check=checks.folds),
            Param("random_inits", 0, int, "random-init encoders (seeds SEED, SEED+1, ...) whose kNN shows the "
                  "random-init reference's spread over inits; 0: default (sample / real data: 5 / 3)", by_data=(5, 3),
                  check=checks.positive_int),
            replace(SPLIT, doc="scoring set; empty: the split transfer scored on | val | dev (only after transfer "
                    "with dev: a classifier fine-tuned on all of train/ has seen the dev images)"),
            SEED, DEVICE, THREADS,
        ),
        writes=("predictions.pt", "predictions.csv"),
        scraps=("config", "eval_acc", "eval_accs", "split", "knn_acc", "linear_acc", "linear_wd", "linear_cv_acc",
                "per_class_acc", "evaluate_wall_s", "confusion", "nearest_neighbours", "feature_map", "feature_spread",
                *(f"{key}_{reference}" for reference in ("random", "pixels")
                  for key in ("knn_acc", "linear_acc", "linear_wd", "linear_cv_acc")),
                *(f"knn_vs_{reference}_{key}" for reference in ("random", "pixels")  # with a pretrained encoder
                  for key in ("ci_low", "ci_high", "p_value")),
                "knn_acc_random_inits", "knn_acc_random_mean", "knn_acc_random_sd"),
        # seed too: the random-init reference is then the version's own seed's, as when the pipeline ran it
        inherits=(Inherit("transfer", ("data", "arch", "size", "from_version", "split", "seed")),
                  Inherit("pretrain", ("data",))),
        needs=(("classifier.pt", "transfer"),), built_on=("transfer",),
    ),
    "review": Stage(
        "review", "04-review.ipynb",
        params=(
            VERSION, RUNS_DIR, DATA, ARCH, SIZE, replace(BS, by_data=(64, 128)),
            Param("n_show", 12, int, "images per grid", check=checks.positive_int),
            SEED, DEVICE, THREADS,
        ),
        writes=(),
        scraps=("config", "n_val_mistakes", "worst_classes", "review_wall_s", "confident_mistakes", "unsure_correct",
                "cam_mistakes", "cam_unsure", "pretext_mistakes"),
        inherits=(Inherit("transfer", ("data", "arch", "size")), Inherit("pretrain", ("data",))),
        needs=(("classifier.pt", "transfer"), ("predictions.pt", "evaluate")), built_on=("transfer", "evaluate"),
    ),
}
PIPELINE = list(STAGES)

# Make variables bin/stage.py reads itself (no notebook parameter of that name).
RUN_VARS = (
    MakeVar("FORCE", "1: run a stage again in an existing version (old files, and what later stages built from "
            "them, are moved aside, never deleted)", "force"),
    MakeVar("RESUME", "1: continue an interrupted stage from its last complete epoch, with its recorded settings "
            "(pipeline: from the first stage not done)", "resume"),
    *(MakeVar(f"FT_{name.upper()}", f"fine-tuning's own {name} (in a pipeline {name.upper()} sets pretraining)",
              f"ft_{name}") for name in ("epochs", "lr", "bs")),
    MakeVar("SEEDS", "pipeline: repeat pretrain -> transfer with pretraining seeds SEED, SEED+1, ...", "seeds"),
)


# Make variables of `make sweep` alone (bin/sweep.py; imgwang.stages.sweep): a stage refuses them.
SWEEP_VARS = (
    MakeVar("SWEEP", 'sweep: a grid, e.g. "patch_frac=0.25,0.5 pct_pos=0.5,0.7" (TASK\'s or pretraining\'s parameters); '
            "one pipeline per point and seed (SEEDS), the FROM=none baseline run once and shared", "sweep"),
    MakeVar("JOBS", "sweep: runs at once (each stage takes its share of the cores); default 1", "jobs"),
    MakeVar("DRY", "sweep: 1 prints the plan, one line per run with its POINT index, and runs nothing", "dry"),
    MakeVar("POINT", "sweep: run only run POINT of the plan (one task of a job array; with VERSION=<sweep>)", "point"),
)


def stage_spec(stage: str) -> Stage:
    from ..core.errors import ConfigError

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}, pipeline")
    return STAGES[stage]


def make_vars() -> list[MakeVar]:
    """Every Make variable, once, in declaration order; a parameter's doc is that of its first stage."""
    out = {}
    for stage in STAGES.values():
        for p in stage.params:
            if p.make and p.make not in out:
                out[p.make] = MakeVar(p.make, p.doc, p.name)
    for var in RUN_VARS:
        out.setdefault(var.name, var)
    return list(out.values())


def option_name(var: MakeVar) -> str:
    """bin/stage.py's option for a Make variable: FT_EPOCHS -> --ft-epochs."""
    return "--" + var.name.lower().replace("_", "-")


class Scraps(dict):
    """The scraps of one stage's executed notebook. Reading a name the stage does not declare is a mistake in
    the reader (a typo, or a scrap the notebook stopped gluing), so it raises instead of returning nothing."""

    def __init__(self, stage: str, data: dict):
        super().__init__(data)
        self.stage = stage

    def _declared(self, name: str) -> str:
        if name not in STAGES[self.stage].scraps and not name.startswith("_"):
            raise KeyError(f"{self.stage} glues no scrap {name!r}: see imgwang/spec/__init__.py")
        return name

    def get(self, name, default=None):
        return super().get(self._declared(name), default)

    def __getitem__(self, name):
        return super().__getitem__(self._declared(name))


def scrap_stage(name: str) -> str:
    """The stage that glues a scrap."""
    return next(stage.name for stage in STAGES.values() if name in stage.scraps)
