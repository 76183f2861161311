#!/usr/bin/env bash
# Every GPU check of the project in one call, on a machine with a CUDA GPU (~8 minutes), run from the repository root:
#   bash bin/gpu_session.sh
# or a part of it: "bash bin/gpu_session.sh recipe" (~2 minutes), "bench", "check" (several names: those parts).
# A GPU machine with torch, torchvision and timm but no package index: bring the other wheels along in the
# ignored .whl/ folder (downloaded first on a machine where pip can reach the index): every package of .venv that
# the machine lacks, for its Python (3.12, x86-64), e.g.
#   pip download --no-deps --only-binary :all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl kornia==0.9.0 kornia_rs==0.2.0 \
#     lightly==1.6.0 papermill scrapbook nbclient nbconvert nbformat ipykernel ipython jupyter_client pyzmq ...
# ("pipeline" and "methods" need the Jupyter ones: papermill runs the notebooks there as it does here.)
# What it prints:
#   bench   the data-path bench at batch 256 and 64 (resnet18 and resnet34d steps, AMP + channels_last)
#   check   bin/gpu_check.py (host waits per training step, each task's pretext metric, transfer from v1 vs none)
#   recipe  bin/recipe_epoch.py: the leaderboard recipe on Imagewang-shaped generated data (26,348 JPEGs at
#           160 px, resident cache, bf16), 2 pretraining + 2 fine-tuning epochs timed, and the projection of
#           the whole recipe. Goal: 100 epochs of the 128-px recipe (+ 5 fine-tuning runs) in under 20 minutes
#           on one H200 (the entry took about 2.4 hours on its GPU).
#   pipeline  `make pipeline DATA=sample` through papermill on the GPU, as a user runs it (.venv/bin/python: the
#           machine's python3 with the carried wheels), then each stage's status, wall time and figures
#   methods issue 22's check, `JOBS=4 bash bin/methods_table.sh gpu` (simclr, swav, dino, byol at 30 epochs, the
#           make commands: pretrain, transfer, evaluate), four at once
#   sweep   bin/pretrain_sweep.py over bin/pretrain_sweep_runs.txt (30-epoch settings of the view methods on the
#           sample, 14 at once; not part of the default set: 89 runs in 7 minutes on an H200): rows in $OUT/sweep.csv as runs finish
set -euo pipefail
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(bench check recipe)
wants() { [[ " ${parts[*]} " == *" $1 "* ]]; }
log="${OUT:-/tmp}/gpu_session.log"
PY=$(command -v python3 || command -v python)
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --target /tmp/site .whl/*.whl ||
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl  # offline: deps may be missing
fi
export PYTHONPATH="/tmp/site:$PWD/lib" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  if wants recipe; then "$PY" bin/recipe_epoch.py --device "${RECIPE_DEVICE:-cuda}" ${RECIPE_ARGS:-}; fi
  if wants bench; then
    "$PY" bin/bench.py --device cuda --batch-size 256 --no-big-cache
    "$PY" bin/bench.py --device cuda --batch-size 64 --no-big-cache
  fi
  if wants pipeline || wants methods; then  # make's .venv: the machine's python3, which holds torch
    mkdir -p .venv/bin && printf '#!/bin/sh\nexec %s "$@"\n' "$PY" > .venv/bin/python && chmod +x .venv/bin/python
    touch .venv/.installed  # newer than requirements.txt: make installs nothing
  fi
  if wants pipeline; then
    make pipeline DATA=sample COMET=off VERSION=gpu-pipeline
    "$PY" - <<'PY'
import json
import scrapbook as sb
import torch
print("GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none, the stages ran on the CPU")
for stage, record in json.load(open("runs/gpu-pipeline/run.json"))["stages"].items():
    print(stage, record["status"], record["wall_s"], "s")
scraps = {n: sb.read_notebook(f"runs/gpu-pipeline/{n}.ipynb").scraps.data_dict for n in ("01-pretrain", "02-transfer", "03-evaluate")}
print("pretrain img/s", round(scraps["01-pretrain"]["pretrain_images_per_s"]), "pretext", scraps["01-pretrain"]["pretext_val_metric"],
      "val_acc", scraps["02-transfer"]["val_acc"], "knn_acc", scraps["03-evaluate"]["knn_acc"])
PY
  fi
  if wants check; then "$PY" bin/gpu_check.py; fi
  if wants methods; then JOBS=4 bash bin/methods_table.sh gpu simclr swav dino byol; fi
  if wants sweep; then
    timeout "${SWEEP_LIMIT_S:-520}" "$PY" bin/pretrain_sweep.py --runs bin/pretrain_sweep_runs.txt \
      --out "${OUT:-/tmp}/sweep.csv" --jobs 14 --runs-dir /tmp/pretrain_sweep || echo "sweep stopped at its time limit"
  fi
} 2>&1 | sed -u 's/\r/\n/g' | grep --line-buffered -v -E 'it/s|s/it|^ *$' | tee "$log"  # no progress bars
