#!/usr/bin/env bash
# The README's main job on embedded defaults. Usage: scripts/demo.sh OUTDIR
# Generates 4 small train-preset VEs, draws the first one, and exports it for DAMASK
# (geometry .vti viewable in ParaView + material.yaml). Safe to re-run (--overwrite).
set -euo pipefail
out=${1:-out/demo}
mkdir -p "$out"
vae3d generate --preset train --count 4 --grid 32 --seed 0 --out "$out/ves.h5" --overwrite
vae3d show "$out/ves.h5" --index 0 --out "$out/ve0.png"
vae3d convert "$out/ves.h5" "$out/ve0.vti" --index 0 --overwrite
echo "demo outputs in $out"
