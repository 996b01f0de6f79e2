#!/usr/bin/env bash
# One GPU, about 12 minutes: train/gpu_paper_size.yaml (the paper's model size, bf16), checkpoints and the
# exported model in OUT, scored on the held-out crops of the learning-curve study (eval/learning_curve.py).
#
#   train/gpu_run.sh OUT [--minutes 10] [--steps N] [--device cuda] [--data SOURCE --heldout "A.nii.gz B.nii.gz"]
#                        [--config train/gpu_paper_size.yaml] [KEY=VALUE ...]
#
# Without --data it prepares the study's data under OUT/data (train/real_t1.csv less the held-out slab of
# ds000031, and the macaque and held-out head crops; needs those files and the mricron templates). Without
# --steps it times 30 steps on the device and takes as many steps as fit in --minutes; training stops at
# --minutes in any case (max_seconds). KEY=VALUE pairs override the recipe (e.g. tiny sizes for a test).
# Writes OUT/timing.json, OUT/run/ (checkpoint.pt, last.safetensors, the run's logs), OUT/model.safetensors
# (float16, as the shipped models) and OUT/scores.json (in-mask PSNR, k-space LR x2 and x3.2, default settings
# of arssr upsample). Run it again with the same OUT to resume.
set -euo pipefail
usage() { sed -n '2,15p' "$0" >&2; exit 2; }
[ $# -ge 1 ] && [[ $1 != -* ]] || usage
out=$1; shift
minutes=10 steps="" device=cuda data="" heldout="" config=train/gpu_paper_size.yaml
while [ $# -gt 0 ]; do
  case $1 in
    --minutes|--steps|--device|--data|--heldout|--config) [ $# -ge 2 ] || usage ;;&
    --minutes) minutes=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --data) data=$(realpath -m "$2"); shift 2 ;;
    --heldout) heldout=$2; shift 2 ;;
    --config) config=$(realpath -m "$2"); shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
overrides=("$@")
out=$(realpath -m "$out")  # the paths given are taken from the caller's folder, not the repository's
scored=()
for volume in $heldout; do scored+=("$(realpath -m "$volume")"); done
cd "$(dirname "$0")/.."
mkdir -p "$out"
if [ -z "$data" ]; then
  [ -f "$out/data/train.csv" ] || python eval/learning_curve.py prepare --out "$out/data"
  data=$out/data/train.csv
  [ ${#scored[@]} -gt 0 ] || scored=("$out/data/macaque.nii.gz" "$out/data/heldout_head.nii.gz")
fi
[ ${#scored[@]} -gt 0 ] || { echo "error: --data needs --heldout (the volumes to score on)" >&2; exit 2; }
seconds=$(python -c "print(round(float('$minutes') * 60))")
sets=()
for pair in "${overrides[@]}"; do sets+=(--set "$pair"); done
if [ -z "$steps" ]; then
  [ -f "$out/timing.json" ] || python eval/learning_curve.py --threads 4 time --source "$data" --device "$device" \
    --steps 30 --out "$out/timing.json" "${sets[@]}" "$config"
  steps=$(python -c "import json, sys; t = next(iter(json.load(open(sys.argv[1])).values()))
print(max(1, int($seconds / max(t['s_per_step'], 1e-3))))" "$out/timing.json")
fi
arssr train --config "$config" --out "$out/run" --resume auto --device "$device" data="$data" steps="$steps" \
  max_seconds="$seconds" "${overrides[@]}"
python train/export_model.py "$out/run/last.safetensors" "$out/model.safetensors" input_spacing_mm=1,6 \
  scale_range=2,4 contrast=T1w skull_stripped=both training="$config"
python eval/learning_curve.py --threads 4 score-model "$out/model.safetensors" "${scored[@]}" --device "$device" \
  --out "$out/scores.json"
