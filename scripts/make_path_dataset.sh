#!/usr/bin/env bash
# The reference load-path CP dataset (issue 14): Mg 16³ `train`-preset VEs of the
# shipped reference set (run seed 301, so their uniaxial CP curves exist too) along
# random load paths through the embedded CP solver. Resumable: rerun the same command to
# grow or finish it (the pairing depends only on the VE's row and the path seed).
#
#   bash scripts/make_path_dataset.sh OUT_DIR [N_VES=300] [PATHS_PER_VE=2] [POOL=150] [INCREMENTS=10]
#
# Path seed 401; VEs share a pool of POOL random paths (0: every VE its own), so the
# effect of the microstructure on a path is seen on several VEs. One torch thread.
set -euo pipefail
OUT=${1:?usage: make_path_dataset.sh OUT_DIR [N_VES] [PATHS_PER_VE] [POOL] [INCREMENTS]}
N_VES=${2:-300}
K=${3:-2}
POOL=${4:-150}
N=${5:-10}
mkdir -p "$OUT"
REF=$(python -c "from importlib.resources import files; print(files('matflow_vae3d') / 'data' / 'reference')")
[ -f "$OUT/mg_ves.h5" ] || cp "$REF/mg16_s301_ves.h5" "$OUT/mg_ves.h5"
POOL_ARG=()
[ "$POOL" -gt 0 ] && POOL_ARG=(--path-pool "$POOL")
vae3d simulate-paths --data "$OUT/mg_ves.h5" --limit "$N_VES" --random-paths "$K" --path-seed 401 \
    "${POOL_ARG[@]}" --increments "$N" --max-strain 0.02 --material Mg --threads 1 \
    --out "$OUT/mg_paths_cp.h5" --no-progress
