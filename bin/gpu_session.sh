#!/usr/bin/env bash
# Every GPU check of the project in one call, on a machine with a CUDA GPU (~8 minutes), run from the repository root:
#   bash bin/gpu_session.sh
# or a part of it: "bash bin/gpu_session.sh recipe" (~2 minutes), "bench", "check" (several names: those parts).
# A GPU machine with torch, torchvision and timm but no package index: bring the other wheels along in the
# ignored .whl/ folder (downloaded first on a machine where pip can reach the index):
#   pip download --no-deps --only-binary :all: --python-version 3.12 -d .whl kornia==0.9.0 kornia_rs==0.2.0 lightly==1.6.0
# What it prints:
#   bench   the data-path bench at batch 256 and 64 (resnet18 and resnet34d steps, AMP + channels_last)
#   check   bin/gpu_check.py (host waits per training step, each task's pretext metric, transfer from v1 vs none)
#   recipe  bin/recipe_epoch.py: the leaderboard recipe on Imagewang-shaped generated data (26,348 JPEGs at
#           160 px, resident cache, bf16), 2 pretraining + 2 fine-tuning epochs timed, and the projection of
#           the whole recipe. Goal: 100 epochs of the 128-px recipe (+ 5 fine-tuning runs) in under 20 minutes
#           on one H200 (the entry took about 2.4 hours on its GPU).
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
  if wants check; then "$PY" bin/gpu_check.py; fi
  if wants sweep; then
    timeout "${SWEEP_LIMIT_S:-520}" "$PY" bin/pretrain_sweep.py --runs bin/pretrain_sweep_runs.txt \
      --out "${OUT:-/tmp}/sweep.csv" --jobs 14 --runs-dir /tmp/pretrain_sweep || echo "sweep stopped at its time limit"
  fi
} 2>&1 | sed -u 's/\r/\n/g' | grep --line-buffered -v -E 'it/s|s/it|^ *$' | tee "$log"  # no progress bars
