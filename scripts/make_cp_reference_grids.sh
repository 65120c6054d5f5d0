#!/usr/bin/env bash
# CP reference sets beyond 16³: Mg (hP) `train`-preset VEs at 32³ (run seed 303) and
# 64³ (run seed 304) through the embedded CP solver at full resolution on the paper's
# load case (uniaxial tension along x to 1 % in 20 increments). Every step resumes:
# rerun the same command to grow or finish the sets (VE i of a run seed is always the
# same VE; `simulate` skips VEs already in its results file).
#
#   bash scripts/make_cp_reference_grids.sh OUT_DIR [N32=150] [N64=24]
#   SHIP=1 bash scripts/make_cp_reference_grids.sh OUT_DIR 0 0   # only refresh the shipped copies
#
# Starts from the shipped partial sets (data/reference/mg32_s303_*, mg64_s304_*) when
# OUT_DIR has none. SHIP=1 writes the VEs that have a CP row and the compacted CP
# results back to matflow_vae3d/data/reference (what the package ships).
# Cost, measured on this 2-core machine with the other core busy: ~112 s CPU per 32³ VE
# and 1.1 GB peak, ~805-1,400 s and 5.9-6.7 GB per 64³ VE with the solver of 2026-12-07;
# 68 s and 0.54 GB per 32³ VE, 700 s and 1.4 GB per 64³ VE since 2026-12-08 (docs/cp_solver.md
# "Side by side"). WORKERS (default 1) solver processes.
set -euo pipefail
OUT=${1:?usage: make_cp_reference_grids.sh OUT_DIR [N32] [N64]}
N32=${2:-150}
N64=${3:-24}
WORKERS=${WORKERS:-1}
mkdir -p "$OUT"
REF=$(python -c "from importlib.resources import files; print(files('matflow_vae3d') / 'data' / 'reference')")

for spec in "32 303 $N32" "64 304 $N64"; do
  set -- $spec
  G=$1 SEED=$2 N=$3 NAME=mg$1_s$2
  VES=$OUT/${NAME}_ves.h5 CP=$OUT/${NAME}_cp.h5
  if [ ! -f "$VES" ] && [ -f "$REF/${NAME}_ves.h5" ]; then
    cp "$REF/${NAME}_ves.h5" "$VES"
    cp "$REF/${NAME}_cp.h5" "$CP"
  fi
  [ "$N" -gt 0 ] || continue
  HAVE=0
  [ -f "$VES" ] && HAVE=$(python -c "from matflow_vae3d.datasets import VEDataset; print(len(VEDataset('$VES')))")
  if [ "$HAVE" -lt "$N" ]; then
    if [ "$HAVE" -eq 0 ]; then
      vae3d generate --preset train --count "$N" --grid "$G" --seed "$SEED" --lattice hP --out "$VES" --no-progress
    else
      vae3d generate --preset train --count $((N - HAVE)) --grid "$G" --seed "$SEED" --lattice hP --out "$VES" \
          --append --no-progress
    fi
  fi
  vae3d simulate --data "$VES" --material Mg --solver builtin --threads 1 --workers "$WORKERS" --batch-size 2 \
      --out "$CP" --no-progress
done

if [ "${SHIP:-0}" = 1 ]; then
  python - "$OUT" "$REF" <<'EOF'
import sys
from pathlib import Path

from matflow_vae3d.cp.results import compact_copy, read_results
from matflow_vae3d.datasets import VEDataset, write_ves

out, ref = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("mg32_s303", "mg64_s304"):
    ves, cp = out / f"{name}_ves.h5", out / f"{name}_cp.h5"
    if not cp.exists():
        continue
    done = set(read_results(cp, fields=("ve_id",))["ve_id"])
    if not done:
        continue
    with VEDataset(str(ves)) as ds:
        keep = [i for i, v in enumerate(ds.ve_ids) if v in done]
        tmp = ref / f"{name}_ves.h5.new"
        write_ves(tmp, (ds[i] for i in keep), progress=False, compression="zstd")
    tmp.replace(ref / f"{name}_ves.h5")
    compact_copy(cp, ref / f"{name}_cp.h5")
    print(f"{name}: shipped {len(keep)} VEs and their CP rows")
EOF
fi
