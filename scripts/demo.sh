#!/usr/bin/env bash
# The README's main job on embedded defaults. Usage: scripts/demo.sh OUTDIR
set -euo pipefail
out=${1:-out/demo}
mkdir -p "$out"
vae3d generate --preset train --count 4 --grid 32 --seed 0 --out "$out/ves.h5"
vae3d show "$out/ves.h5" --index 0 --out "$out/ve0.png"
echo "demo outputs in $out"
