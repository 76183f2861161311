#!/usr/bin/env bash
# Every GPU check of the project in one call, for a session that is lent a device machine (~6 minutes):
#   device run: command "bash bin/gpu_session.sh", carry [".whl"], timeout_s 560
# The device machine has torch, torchvision and timm but no registry access: bring the other wheels
# in the ignored .whl/ folder first (here, where pip can reach the registry):
#   pip download --no-deps --only-binary :all: --python-version 3.12 -d .whl kornia==0.9.0 kornia_rs==0.2.0 lightly==1.6.0
# What it prints: the data-path bench at batch 256 and 64 (resnet18 and resnet34d steps, AMP + channels_last),
# then bin/gpu_check.py (host waits per training step, each task's pretext metric, transfer from v1 vs none).
set -euo pipefail
log="${OUT:-/tmp}/gpu_session.log"
pip install -q --target /tmp/site .whl/*.whl || pip install -q --no-deps --target /tmp/site .whl/*.whl  # offline: deps may be missing
export PYTHONPATH="/tmp/site:$PWD/lib" HF_HUB_OFFLINE=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  python bin/bench.py --device cuda --batch-size 256 --no-big-cache
  python bin/bench.py --device cuda --batch-size 64 --no-big-cache
  python bin/gpu_check.py
} 2>&1 | tee "$log"
