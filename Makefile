# imgwang: every stage runs a template notebook with papermill into runs/<VERSION>/.
# `make help` lists targets and variables. The first target that needs Python builds .venv/.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The Make variables a stage takes, declared with their docs in lib/imgwang/spec/__init__.py (`make help` lists
# them). Each set one reaches bin/stage.py as NAME=value; a new one is one word here.
STAGE_VARS := VERSION TASK DATA SIZE EPOCHS BS LR ARCH SEED DEVICE THREADS FROM RUNS COMET FORCE RESUME FT_EPOCHS FT_LR FT_BS SEEDS NPROC NNODES NODE_RANK MASTER SPLIT
P ?=
STAGE_ARGS = $(foreach v,$(STAGE_VARS),$(if $($(v)),"$(v)=$($(v))")) $(P)

export HF_HUB_OFFLINE := 1

# `make sweep` takes the stage variables and its own (declared in lib/imgwang/spec/__init__.py's SWEEP_VARS).
SWEEP_VARS := SWEEP JOBS DRY POINT

LEADERBOARD_VARS := SIZE VERSION DATA DEVICE SEED COMET PRETRAIN_EPOCHS FT_EPOCHS RUNS DRY

.PHONY: help pretrain transfer evaluate review pipeline sweep leaderboard compare data lab tasks-table bench test venv

help: ## list targets and variables
	@echo "imgwang: self-supervised pretraining lab. Targets:"
	@grep -E '^[a-z-]+:.*## ' Makefile | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-12s %s\n", $$1, $$2}'
	@PYTHONPATH=lib $(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m imgwang.stages.render

venv: $(STAMP) ## create .venv and install everything (automatic on first use)

$(STAMP): requirements.txt lib/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip -q
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -e lib --no-deps -q
	touch $(STAMP)

pretrain: $(STAMP) ## pretext-train an encoder: make pretrain VERSION=v8 TASK=patchwork DATA=sample
	$(PY) bin/stage.py pretrain $(STAGE_ARGS)

transfer: $(STAMP) ## fine-tune on the labelled set: make transfer VERSION=v8 [FROM=none] [RUNS=5]
	$(PY) bin/stage.py transfer $(STAGE_ARGS)

evaluate: $(STAMP) ## accuracy, per class, confusion, kNN and linear probe of a version
	$(PY) bin/stage.py evaluate $(STAGE_ARGS)

review: $(STAMP) ## most confident mistakes, worst classes, pretext mistakes with their sources
	$(PY) bin/stage.py review $(STAGE_ARGS)

pipeline: $(STAMP) ## all four stages into one new version: make pipeline DATA=sample
	$(PY) bin/stage.py pipeline $(STAGE_ARGS)

sweep: $(STAMP) ## a grid of pipelines, the baseline shared: make sweep TASK=patchwork DATA=sample SWEEP="patch_frac=0.25,0.5 pct_pos=0.5,0.7" SEEDS=2 RUNS=3 [JOBS=2] [RESUME=1] [DRY=1]
	$(PY) bin/sweep.py $(STAGE_ARGS) $(foreach v,$(SWEEP_VARS),$(if $($(v)),"$(v)=$($(v))"))

leaderboard: $(STAMP) ## the 72.94% entry's recipe: SwAV 100 epochs + 5 fine-tuning runs, SIZE=128 (DRY=1: print the plan)
	$(PY) bin/leaderboard.py $(foreach v,$(LEADERBOARD_VARS),$(if $($(v)),"$(v)=$($(v))"))

compare: $(STAMP) ## one row per version; writes runs/compare.csv and runs/05-compare.ipynb
	$(PY) bin/compare.py

data: $(STAMP) ## fetch or generate DATA and print what it holds: make data DATA=imagewang
	$(PY) bin/data.py "$(or $(DATA),imagewang)"

lab: $(STAMP) ## open JupyterLab at the project root; prints the address and token [LAB_IP=0.0.0.0] [LAB_PORT=8888]
	$(PY) bin/lab.py $(if $(LAB_IP),--ip "$(LAB_IP)") $(if $(LAB_PORT),--port "$(LAB_PORT)")

tasks-table: $(STAMP) ## pretrain every task on DATA (default sample): pretext metric vs chance, kNN vs untrained
	$(PY) bin/task_table.py --data "$(or $(DATA),sample)" --epochs "$(EPOCHS)"

bench: $(STAMP) ## data-path and training-step throughput; two runs at once against one; DDP at 1 and 2 processes (scripts, not tests)
	$(PY) bin/bench.py $(if $(DEVICE),--device $(DEVICE))
	$(PY) bin/bench_share.py
	$(PY) bin/bench_ddp.py $(if $(filter cuda,$(DEVICE)),--device cuda)

test: $(STAMP) ## ruff, then the test suite (about 4 min on 2 idle CPU cores from a fresh clone: 3:08-4:25 with ruff; docs/results.md)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest tests -q -n 2 --dist loadgroup --no-loadscope-reorder
