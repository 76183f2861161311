#!/usr/bin/env bash
# Issue 22's check that the published methods learn on the sample: for each method, 30 epochs of pretraining
# (tinyconv, 64 px), one fine-tuning epoch, then evaluate; prints evaluate's kNN of the pretrained encoder beside
# the raw-pixel and random-init kNN (and the random init's mean and sd over evaluate's random_inits), the last
# training loss and the collapse monitor. Two methods at a time (JOBS).
#   bash bin/methods_table.sh [prefix] [methods...]      e.g. bash bin/methods_table.sh m30 simclr swav dino byol
#   SEED=1 bash bin/methods_table.sh s1 simclr ...         every stage at that seed (the random-init reference too)
#   ARCH=resnet18 bash bin/methods_table.sh r18 byol ...    another encoder (default tinyconv)
#   P="-p n_prototypes 64" bash bin/methods_table.sh k64 swav    task parameters for pretraining only
#   EPOCHS=150 bash bin/methods_table.sh t150 byol dino     more pretraining epochs (default 30)
#   JOBS=4 bash bin/methods_table.sh gpu                    four methods at once (a GPU machine)
set -euo pipefail
{  # read whole before running: editing this file during a run (hours) must not change the run
prefix=${1:-m30}; shift || true
methods=("$@"); [ ${#methods[@]} -eq 0 ] && methods=(simclr swav dino byol)
one() {
  local t=$1 v="$prefix-$1"
  local seed=${SEED:-0}
  make -s pretrain DATA=sample TASK="$t" EPOCHS=${EPOCHS:-30} ARCH=${ARCH:-tinyconv} SIZE=64 VERSION="$v" THREADS=1 COMET=off SEED=$seed \
    P="${P:-}"
  make -s transfer DATA=sample EPOCHS=1 VERSION="$v" THREADS=1 COMET=off SEED=$seed P=
  make -s evaluate VERSION="$v" THREADS=1 COMET=off SEED=$seed P=
}
jobs=${JOBS:-2}
for ((i = 0; i < ${#methods[@]}; i += jobs)); do
  pids=()
  for t in "${methods[@]:i:jobs}"; do one "$t" > "runs/$prefix-$t.log" 2>&1 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || echo "a run failed: see runs/$prefix-*.log"; done
done
.venv/bin/python - "$prefix" "${methods[@]}" <<'PY'
import math, sys
import scrapbook as sb
import torch
prefix, methods = sys.argv[1], sys.argv[2:]
print(f"{'method':8} {'knn_acc':>8} {'pixels':>8} {'random':>8} {'margin':>8} {'rnd_mean':>8} {'rnd_sd':>7} {'loss':>8} {'ln K':>6} "
      f"{'emb_std':>8} {'floor':>7}")
for t in methods:
    try:
        pre = sb.read_notebook(f"runs/{prefix}-{t}/01-pretrain.ipynb").scraps.data_dict
        ev = sb.read_notebook(f"runs/{prefix}-{t}/03-evaluate.ipynb").scraps.data_dict
    except Exception as e:  # a run that failed: say so and go on
        print(f"{t:8} missing ({e})"); continue
    knn, px, rnd = (float(ev[k]) for k in ("knn_acc", "knn_acc_pixels", "knn_acc_random"))
    rnd_mean, rnd_sd = (float(ev.get(k, "nan")) for k in ("knn_acc_random_mean", "knn_acc_random_sd"))  # over inits
    hist = pre.get("pretrain_history") or []
    loss = float(hist[-1]["train_loss"]) if hist else float("nan")
    cfg = pre.get("config", {})
    k = None  # swav's prototype count, as trained (read from its model, whatever rule or -p set it)
    if t == "swav":
        k = torch.load(f"runs/{prefix}-{t}/pretext_model.pt", map_location="cpu", weights_only=True)["prototypes.weight"].shape[0]
    lnk = f"{math.log(k):.3f}" if k else ""
    print(f"{t:8} {knn:8.4f} {px:8.4f} {rnd:8.4f} {knn - max(px, rnd):+8.4f} {rnd_mean:8.4f} {rnd_sd:7.4f} {loss:8.3f} {lnk:>6} "
          f"{float(pre.get('embedding_std', 'nan')):8.4f} {float(pre.get('embedding_std_floor', 'nan')):7.4f}")
PY
exit
}
