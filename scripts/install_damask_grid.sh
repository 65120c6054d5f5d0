#!/usr/bin/env bash
# Build DAMASK_grid (the reference spectral CP solver) from its public source on a
# Debian/Ubuntu workstation, for `vae3d simulate --solver damask` and MatFlow's DAMASK
# tasks. CI does not run this (the embedded solver needs none of it).
#
#   bash scripts/install_damask_grid.sh [SOURCE] [PREFIX=$HOME/.local]
#
# SOURCE: a DAMASK source folder (a checkout or an unpacked release) or a git ref of
# the public repository (default: $DAMASK_REF or master), cloned into PREFIX/src.
# Installs PREFIX/bin/DAMASK_grid; the build folder is kept in SOURCE/build/grid.
#
# Steps:
#   1. Debian packages (needs root or sudo; skipped with SKIP_APT=1): gfortran, PETSc
#      (petsc-dev, which Debian builds with HDF5, FFTW and Open MPI), FFTW-MPI, HDF5
#      (Open MPI), pkg-config, cmake, make;
#   2. cmake -DDAMASK_SOLVER=grid with PETSC_DIR from Debian's /usr/lib/petsc;
#   3. build (JOBS parallel compile jobs, default all cores) and install.
# DAMASK 3.0.x builds against PETSc 3.12 <= version < 3.22 (Debian 12 ships 3.18).
# Measured on a 2-core machine (docs/cp_driver.md): see "DAMASK_grid, built here".
set -euo pipefail
SOURCE=${1:-${DAMASK_REF:-master}}
PREFIX=${2:-$HOME/.local}
JOBS=${JOBS:-$(nproc)}
REPO=${DAMASK_REPO:-https://github.com/eisenforschung/DAMASK.git}
t0=$(date +%s)

if [ "${SKIP_APT:-0}" != 1 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        gfortran petsc-dev libfftw3-mpi-dev libhdf5-openmpi-dev openmpi-bin pkg-config cmake make git
fi

if [ -d "$SOURCE" ]; then
    SRC=$(cd "$SOURCE" && pwd)
else
    SRC="$PREFIX/src/DAMASK-$SOURCE"
    [ -d "$SRC" ] || git clone --depth 1 --branch "$SOURCE" "$REPO" "$SRC"
fi
[ -f "$SRC/CMakeLists.txt" ] && [ -d "$SRC/src/grid" ] || { echo "error: $SRC is not a DAMASK source folder" >&2; exit 1; }

export PETSC_DIR=${PETSC_DIR:-/usr/lib/petsc}
[ -f "$PETSC_DIR/lib/petsc/conf/petscvariables" ] || { echo "error: no PETSc in PETSC_DIR=$PETSC_DIR (install petsc-dev)" >&2; exit 1; }
# DAMASK's FFTW module includes fftw3-mpi.f03, which Debian puts in /usr/include, a
# folder gfortran does not search for Fortran includes
FFTW_INC=${FFTW_INC:-/usr/include}
[ -f "$FFTW_INC/fftw3-mpi.f03" ] || { echo "error: no fftw3-mpi.f03 in FFTW_INC=$FFTW_INC (install libfftw3-mpi-dev)" >&2; exit 1; }
# and PETSc's link line names HDF5's C library only: DAMASK also needs its Fortran one
HDF5_LIBDIR=${HDF5_LIBDIR:-$(dirname "$(find /usr/lib -name 'libhdf5_fortran.so' -path '*openmpi*' 2>/dev/null | head -1)")}
[ -f "$HDF5_LIBDIR/libhdf5_fortran.so" ] || { echo "error: no libhdf5_fortran.so in HDF5_LIBDIR=$HDF5_LIBDIR (install libhdf5-openmpi-dev)" >&2; exit 1; }
mkdir -p "$PREFIX/bin"
cmake -S "$SRC" -B "$SRC/build/grid" -DDAMASK_SOLVER=grid -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_BUILD_TYPE=RELEASE \
    -DBUILDCMD_POST="-I$FFTW_INC -L$HDF5_LIBDIR -lhdf5_fortran"
cmake --build "$SRC/build/grid" --parallel "$JOBS" --target install
echo "DAMASK_grid $(cat "$SRC/VERSION") -> $PREFIX/bin/DAMASK_grid ($(( $(date +%s) - t0 )) s)"
case ":$PATH:" in *":$PREFIX/bin:"*) ;; *) echo "add $PREFIX/bin to PATH (or pass --damask-grid $PREFIX/bin/DAMASK_grid)";; esac
