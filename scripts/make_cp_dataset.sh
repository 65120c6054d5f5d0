#!/usr/bin/env bash
# The reference CP dataset: Mg (hP) and Cu (cF) 16³ `train`-preset VEs through the
# embedded CP solver on the paper's load case (uniaxial tension along x to 1 % strain
# in 20 increments). Every step resumes: rerun the same command to grow or finish the
# set (VE i of a run seed is always the same VE; `simulate` skips VEs already in its
# results file and keeps failures with their reasons).
#
#   bash scripts/make_cp_dataset.sh OUT_DIR [N_MG=1200] [N_CU=250] [DEVICE=cpu]
#
# WORKERS (default: the machine's core count; 1 with a GPU) solver processes run side
# by side, one torch thread each; the files do not depend on WORKERS.
#
# Seeds: Mg run seed 301, Cu run seed 302 (disjoint from every VAE training/held-out
# set, which use 101-116 and 201-216). One torch thread per solver process.
set -euo pipefail
OUT=${1:?usage: make_cp_dataset.sh OUT_DIR [N_MG] [N_CU] [DEVICE]}
N_MG=${2:-1200}
N_CU=${3:-250}
DEVICE=${4:-cpu}
if [ "$DEVICE" = cpu ]; then WORKERS=${WORKERS:-$(nproc)}; else WORKERS=${WORKERS:-1}; fi
mkdir -p "$OUT"
# both sets ship in the package (data/reference): start from them rather than from nothing
REF=$(python -c "from importlib.resources import files; print(files('matflow_vae3d') / 'data' / 'reference')")
for pair in "mg mg16_s301" "cu cu16_s302"; do
  set -- $pair
  if [ ! -f "$OUT/$1_ves.h5" ] && [ -f "$REF/$2_ves.h5" ]; then
    cp "$REF/$2_ves.h5" "$OUT/$1_ves.h5"
    cp "$REF/$2_cp.h5" "$OUT/$1_cp.h5"
  fi
done

ves() {  # ves FILE LATTICE SEED N: generate or extend FILE to N VEs
  local file=$1 lattice=$2 seed=$3 n=$4 have=0
  if [ -f "$file" ]; then
    have=$(python -c "from matflow_vae3d.datasets import VEDataset; print(len(VEDataset('$file')))")
  fi
  if [ "$have" -lt "$n" ]; then
    if [ "$have" -eq 0 ]; then
      vae3d generate --preset train --count "$n" --grid 16 --seed "$seed" --lattice "$lattice" --out "$file" --no-progress
    else
      vae3d generate --preset train --count $((n - have)) --grid 16 --seed "$seed" --lattice "$lattice" \
          --out "$file" --append --no-progress
    fi
  fi
}

ves "$OUT/mg_ves.h5" hP 301 "$N_MG"
vae3d simulate --data "$OUT/mg_ves.h5" --material Mg --solver builtin --device "$DEVICE" --threads 1 --workers "$WORKERS" \
    --out "$OUT/mg_cp.h5" --no-progress
ves "$OUT/cu_ves.h5" cF 302 "$N_CU"
vae3d simulate --data "$OUT/cu_ves.h5" --material Cu --solver builtin --device "$DEVICE" --threads 1 --workers "$WORKERS" \
    --out "$OUT/cu_cp.h5" --no-progress
