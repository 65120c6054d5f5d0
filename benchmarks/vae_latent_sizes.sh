#!/usr/bin/env bash
# Latent size vs reconstruction error at an equal, short budget: the periodic VAE with
# 4, 8 and 16 latent channels (256, 512, 1024 numbers for a 16³ VE), each trained for
# one epoch over the first N `train`-preset hP VEs of the recipe's training run seed
# (101) with its own warm-up + cosine schedule, then evaluated on the recipe's
# held-out test set (run seed 103).
#
#   bash benchmarks/vae_latent_sizes.sh WORK [N=9600] [N_TEST=200]
set -euo pipefail
WORK=${1:?usage: vae_latent_sizes.sh WORK [N] [N_TEST]}
N=${2:-9600}
NT=${3:-200}
mkdir -p "$WORK"
TRAIN=$WORK/hP16_train_first$N.h5
[ -f "$TRAIN" ] || vae3d generate --preset train --count "$N" --grid 16 --seed 101 --lattice hP --out "$TRAIN" --no-progress
TEST=$WORK/hP16_test.h5
[ -f "$TEST" ] || vae3d generate --preset train --count "$NT" --grid 16 --seed 103 --lattice hP --out "$TEST" --no-progress
for C in 4 8 16; do
  RUN=$WORK/latent_c$C
  t0=$(date +%s)
  vae3d train-vae --train "$TRAIN" --out "$RUN" --preset periodic --latent-channels $C --epochs 1 \
      --warmup-steps 100 --threads 1 --no-progress --no-resume --accelerator cpu > "$RUN.log" 2>&1
  t1=$(date +%s)
  echo "C=$C ($((C * 64)) numbers): $((t1 - t0)) s training"
  vae3d evaluate --model "$RUN/model.pt" --data "$TEST" --max-ves "$NT" --no-baselines --no-progress --threads 1 | tail -1
done
