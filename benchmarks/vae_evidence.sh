#!/usr/bin/env bash
# Evidence for the shipped VAEs (docs/vae.md, docs/results.md), after
# matflow_vae3d/data/pretrained/make_pretrained.py has trained and exported them:
# latent-space figures and clustering, roll invariance, CPU speed, and (hP, when a CP
# results file is given) the surrogate on the new fingerprints next to its baselines.
#
#   bash benchmarks/vae_evidence.sh WORK [CP_VES.h5 CP_STRESS.h5]
#
# LATTICES="cF" limits the per-lattice part, SPEED=0 skips the CPU speed table.
# WORK holds the recipe's sets (hP16_val.h5, hP16_test.h5, hP16_brass.h5, ...; the
# same for cF). Figures and tables go to docs/vae/ (latent_*), the console and
# WORK/evidence/. One torch thread everywhere (2-core CPU).
set -euo pipefail
WORK=${1:?usage: vae_evidence.sh WORK [CP_VES.h5 CP_STRESS.h5]}
CP_VES=${2:-}
CP_STRESS=${3:-}
OUT=$WORK/evidence
DOCS=docs/vae
mkdir -p "$OUT" "$DOCS"
MODELS=${MODELS:-matflow_vae3d/data/pretrained}   # where vae_<L>_grid16.pt lie
V="vae3d"
T="--threads 1"

for L in ${LATTICES:-hP cF}; do
  M=$MODELS/vae_${L}_grid16.pt
  [ -f "$M" ] || { echo "no $M: skipping $L"; continue; }
  echo "== $L: latent space"
  $V fingerprint --model "$M" --data "$WORK/${L}16_val.h5" --out "$OUT/${L}_val_fp.h5" --overwrite --no-progress $T
  $V latent --model "$M" --train "$OUT/${L}_val_fp.h5" --set brass="$WORK/${L}16_brass.h5" \
      --set copper="$WORK/${L}16_copper.h5" --set cube="$WORK/${L}16_cube.h5" --set goss="$WORK/${L}16_goss.h5" \
      --out "$OUT/${L}_latent_texture" $T
  $V latent --model "$M" --train "$OUT/${L}_val_fp.h5" --set train="$WORK/${L}16_test.h5" \
      --set large="$WORK/${L}16_large.h5" --set small="$WORK/${L}16_small.h5" \
      --set elongated="$WORK/${L}16_elongated.h5" --out "$OUT/${L}_latent_morphology" $T
  cp "$OUT/${L}_latent_texture/pca.png" "$DOCS/pca_texture_${L}.png"
  cp "$OUT/${L}_latent_morphology/pca.png" "$DOCS/pca_morphology_${L}.png"
  cp "$OUT/${L}_latent_texture/path.png" "$DOCS/path_${L}.png"
  echo "== $L: roll invariance"
  python benchmarks/bench_roll_invariance.py --model "$M" --data "$WORK/${L}16_test.h5" --n 200 \
      --png "$DOCS/roll_invariance_${L}.png" | tee "$OUT/${L}_roll.md"
done

[ "${SPEED:-1}" = 1 ] && echo "== CPU speed" && python benchmarks/bench_vae.py --cpu --threads 1 --model "$MODELS/vae_hP_grid16.pt" --data "$WORK/hP16_test.h5" --n-ves 500 | tee "$OUT/speed.md"

if [ -n "$CP_VES" ]; then
  echo "== surrogate on the new hP fingerprints"
  M=$MODELS/vae_hP_grid16.pt
  $V fingerprint --model "$M" --data "$CP_VES" --out "$OUT/cp_fp.h5" --overwrite --no-progress $T
  rm -f "$OUT/cp_feat.h5"
  python -m matflow_vae3d.surrogate.baselines "$CP_VES" "$OUT/cp_feat.h5"
  for IN in cp_fp cp_feat; do
    $V train-surrogate -f "$OUT/$IN.h5" -s "$CP_STRESS" --out "$OUT/sur_$IN.ckpt" --ensemble 5 \
        --val-fraction 0.2 --test-fraction 0.25 --patience 200 --epochs 3000 --overwrite --no-progress
    $V evaluate-surrogate -m "$OUT/sur_$IN.ckpt" -f "$OUT/$IN.h5" -s "$CP_STRESS" --out-dir "$OUT/ev_$IN" \
        | tee "$OUT/ev_$IN.md"
  done
  python benchmarks/bench_roll_invariance.py --model "$M" --data "$CP_VES" --n 200 \
      --surrogate "$OUT/sur_cp_fp.ckpt" --png "$DOCS/roll_invariance_surrogate.png" | tee "$OUT/roll_surrogate.md"
fi
