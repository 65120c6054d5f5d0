"""Test infrastructure: write result files in the layout DAMASK_grid 3.0.x writes (DADF5 0.14).

This exists only to test the *reading* path (``damask_driver.read_result`` and the success
path of ``damask_driver.run_job``) without a DAMASK_grid installation. It is not part of
the package (it lives under tests/ and is imported by tests only) and it does not
simulate anything: the fields written are whatever the test passes in.

Scope: a grid (spectral) job with one phase, one constituent per cell and a ``pass``
homogenization, the case ``damask_driver.write_inputs`` produces. Layout, with where each
element comes from in DAMASK's Fortran writer (damask-multiphysics/DAMASK, src/). Sources:
the versions of these files that write DADF5 0.14 (``results.f90`` with
``DADF5_version_minor`` 14, module name ``results``). The files at the v3.0.x tags
themselves were not available; every element below is the same in the stored versions
before (DADF5 0.12, 0.13) and after (DADF5 1.0, ``result.f90``) except where noted: the
oldest versions wrote fixed-length string attributes and always created empty damage and
thermal groups under the homogenization; the 0.14-era versions no longer do, nor does 1.0.
The storage filters (chunking, checksum) follow the newer HDF5_utilities.f90 (pREAL era);
older ones wrote small datasets unfiltered. damask.Result does not look at them.

/  attributes ``DADF5_version_major`` = 0, ``DADF5_version_minor`` = 14 (int32),
   ``creator`` = "<argv[0]> <DAMASK version>", ``created`` (date), ``call`` (the command
   line)                                                              results.f90 results_init
/cell_to            attribute ``description``                         results.f90 results_init
/cell_to/phase      compound (label: fixed-length space-padded string, entry: int64,
                    0-based), shape (N_cells, N_constituents) = (N_cells, 1); entry =
                    running count of the phase's cells in cell order  results.f90 results_mapping_phase,
                                                                      material.f90 parse
/cell_to/homogenization  same compound, shape (N_cells,)              results.f90 results_mapping_homogenization
                    (both with creator/created/description)           results.f90 executionStamp
/setup              attribute ``description``; one dataset per input file (material.yaml,
                    numerics.yaml if present, the geometry file, the load file) named by
                    the file's base name: shape (1,), NUL-terminated fixed-length string,
                    attributes creator/created/description
                                                                      config.f90,
                                                                      grid/discretization_grid.f90,
                                                                      grid/DAMASK_grid.f90,
                                                                      HDF5_utilities.f90 HDF5_write_str
/geometry           attributes ``cells`` (int32 (3,)), ``size``, ``origin`` (float64 (3,))
                                                                      grid/discretization_grid.f90
/increment_<N>      attribute ``t/s`` (float64), for N = 0 (initial state, t = 0) and every
                    f_out-th converged increment                      results.f90 results_addIncrement,
                                                                      grid/DAMASK_grid.f90,
                                                                      materialpoint.f90 materialpoint_results
  phase/<phase>/mechanical/F, P   float64 (N_entries, 3, 3), row-major tensors (the
                    Fortran writer transposes each tensor so that [c, i, j] = T_ij),
                    attributes creator, created, description, unit  phase.f90 phase_results,
                                                                      phase_mechanical.f90 results,
                                                                      results.f90 results_writeTensorDataset_real
                    (no damage/thermal group without damage/thermal; plasticity outputs
                    only when listed in the phase's output)           phase_damage.f90, phase_thermal.f90
  homogenization/<homogenization>/mechanical   empty group for ``pass`` without output
                                                                      homogenization.f90 homogenization_results,
                                                                      homogenization_mechanical.f90
  geometry/u_n      float64 ((nx+1)(ny+1)(nz+1), 3) node displacements, unit m
  geometry/u_p      float64 (N_cells, 3) cell-centre displacements, unit m
                                                                      discretization.f90 discretization_results
Datasets are chunked as a whole with a Fletcher-32 checksum (shuffle + deflate 6 from
2 * 1024**2/8 elements on)                                           HDF5_utilities.f90 initialize_write
String attributes are scalar variable-length ASCII strings            HDF5_utilities.f90 HDF5_addAttribute_str

What ``damask.Result`` (the reader, damask/_result.py) requires of this: the version
attributes, ``geometry`` with ``cells``/``size``/``origin`` (structured grid),
``increment_<N>`` groups with ``t/s``, ``cell_to/phase`` (2-D) and
``cell_to/homogenization`` with ``label`` and ``entry``, the groups
``increment_<first>/phase/<label>`` and ``.../homogenization/<label>`` (their keys are the
fields), ``increment_<N>/geometry`` (``get``/``place`` read it) and ``unit`` and
``description`` on datasets (``list_data``); ``setup`` only for
``simulation_setup_files``/``export_simulation_setup``.

Cell order: DAMASK numbers the cells x fastest, flat index ix + nx*(iy + ny*iz)
(discretization_grid.f90 IPcoordinates0), the order of damask.GeomGrid's
``material.flatten(order='F')``. Field arguments here are in that order; ``cell_order``
converts an [ix, iy, iz, ...] array. With one phase, entry k of the phase data is cell k.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

DAMASK_VERSION = "3.0.2"
DEFAULT_COMMAND = (
    "DAMASK_grid",
    "--geom",
    "grid.vti",
    "--load",
    "load.yaml",
    "--material",
    "material.yaml",
    "--jobname",
    "job",
)
#: descriptions DAMASK gives the input files it stores under /setup
SETUP_DESCRIPTIONS = {
    "material.yaml": "main configuration",
    "numerics.yaml": "numerics configuration",
    "debug.yaml": "debug configuration",
    ".vti": "geometry definition (grid solver)",
    ".yaml": "load case definition (grid solver)",  # any other YAML: the load file
}
STA_HEADER = "Increment Time CutbackLevel Converged IterationsNeeded StagIterationsNeeded"
_CHUNK_SIZE = 1024**2 // 8  # HDF5_utilities.f90 chunkSize (elements)


def now() -> str:
    """DAMASK's time stamp (results.f90 ``now``): 'YYYY-MM-DD hh:mm:ss+zzzz'."""
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S%z")


def cell_order(field: np.ndarray) -> np.ndarray:
    """(nx, ny, nz, ...) indexed [ix, iy, iz] -> (nx*ny*nz, ...) in DAMASK's cell order (x fastest)."""
    a = np.asarray(field)
    return np.moveaxis(a, (0, 1, 2), (2, 1, 0)).reshape((-1,) + a.shape[3:])


# ------------------------------------------------------------------ low-level writing
def _vlen_ascii():
    return h5py.string_dtype("ascii")


def _attr_str(obj, name: str, value: str) -> None:
    obj.attrs.create(name, value.encode("ascii"), dtype=_vlen_ascii())


def _stamp(obj, description: str, unit: str | None = None, version: str = DAMASK_VERSION) -> None:
    """results.f90 executionStamp: creator, created, description and (if given) unit."""
    _attr_str(obj, "creator", f"DAMASK {version}")
    _attr_str(obj, "created", now())
    _attr_str(obj, "description", description)
    if unit is not None:
        _attr_str(obj, "unit", unit)


def _real_dataset(group, name: str, data, description: str, unit: str, version: str):
    data = np.ascontiguousarray(data, dtype="<f8")
    kw = {}
    if data.size > 0:
        kw["fletcher32"] = True
        if data.size >= 2 * _CHUNK_SIZE:
            kw.update(chunks=True, shuffle=True, compression="gzip", compression_opts=6)
        else:
            kw["chunks"] = data.shape
    ds = group.create_dataset(name, data=data, **kw)
    _stamp(ds, description, unit, version)
    return ds


def _string_dataset(group, name: str, text: str, description: str, version: str):
    """HDF5_utilities.f90 HDF5_write_str: shape (1,), C string of len + 1 (NUL-terminated)."""
    raw = text.encode()
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(raw) + 1)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((1,))
    dcpl.set_fletcher32()
    dsid = h5py.h5d.create(group.id, name.encode(), tid, h5py.h5s.create_simple((1,)), dcpl=dcpl)
    ds = h5py.Dataset(dsid)
    ds[0] = np.frombuffer(raw + b"\0", dtype=f"S{len(raw) + 1}")[0]
    _stamp(ds, description, version=version)
    return ds


def _mapping_dataset(group, name: str, labels: np.ndarray, entries: np.ndarray, description: str, version: str):
    """results.f90 results_mapping_*: compound {label: H5T_NATIVE_CHARACTER * len, entry: int64}.

    H5T_NATIVE_CHARACTER is Fortran's character type (space padded); all labels have the
    length of the longest name (Fortran pads the names to a common length).
    """
    n = max(len(s) for s in np.unique(labels))
    st = h5py.h5t.FORTRAN_S1.copy()
    st.set_size(n)
    ct = h5py.h5t.create(h5py.h5t.COMPOUND, n + 8)
    ct.insert(b"label", 0, st)
    ct.insert(b"entry", n, h5py.h5t.STD_I64LE)
    dsid = h5py.h5d.create(group.id, name.encode(), ct, h5py.h5s.create_simple(labels.shape))
    ds = h5py.Dataset(dsid)
    mem = np.empty(labels.shape, dtype=[("label", f"S{n}"), ("entry", "<i8")])
    mem["label"] = np.char.ljust(labels.astype(str), n).astype(f"S{n}")
    mem["entry"] = entries
    ds[...] = mem
    _stamp(ds, description, version=version)
    return ds


def _setup_description(name: str) -> str:
    if name in SETUP_DESCRIPTIONS:
        return SETUP_DESCRIPTIONS[name]
    return SETUP_DESCRIPTIONS[Path(name).suffix] if Path(name).suffix in SETUP_DESCRIPTIONS else "input file"


# ----------------------------------------------------------------------- the writer
def write_dadf5(
    path,
    F,
    P,
    t,
    cells,
    size,
    phase: str = "Mg",
    homogenization: str = "SX",
    materials: str | None = None,
    *,
    increments: Sequence[int] | None = None,
    origin=(0.0, 0.0, 0.0),
    setup: Mapping[str, str] | None = None,
    command: Sequence[str] = DEFAULT_COMMAND,
    version: str = DAMASK_VERSION,
    u_p=None,
    u_n=None,
) -> Path:
    """Write a DADF5 0.14 file as DAMASK_grid 3.0.x does for one phase, 1 constituent, pass.

    Test infrastructure for the reading path only (see the module docstring for the
    layout and its sources).

    F, P : (n_frames, N_cells, 3, 3), cells in DAMASK's order (x fastest, see
        ``cell_order``); P in Pa. t : (n_frames,) s.
    cells : (nx, ny, nz); size : (3,) m; origin : (3,) m.
    phase, homogenization : the names (as in material.yaml).
    materials : text of material.yaml, stored as setup/material.yaml as DAMASK does
        (None: not stored; damask.Result does not read it).
    increments : increment number of each frame (default 0, 1, ...; DAMASK writes 0, the
        initial state, and every f_out-th increment).
    setup : further input files {base name: text} stored under /setup (grid.vti,
        load.yaml, numerics.yaml).
    command : DAMASK_grid's argv (``creator`` and ``call`` attributes).
    u_p, u_n : (n_frames, N_cells, 3) and (n_frames, N_nodes, 3) displacements; default:
        the affine part (mean F - I) x0 (exact for homogeneous fields).
    """
    F = np.asarray(F, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    cells = np.asarray(cells, dtype=np.int32).reshape(3)
    size = np.asarray(size, dtype=np.float64).reshape(3)
    n_cells = int(np.prod(cells))
    if F.shape != (len(t), n_cells, 3, 3) or P.shape != F.shape:
        raise ValueError(f"F and P must be (n_frames={len(t)}, N_cells={n_cells}, 3, 3), got {F.shape}, {P.shape}")
    incs = list(range(len(t))) if increments is None else [int(i) for i in increments]
    if len(incs) != len(t):
        raise ValueError("one increment number per frame")

    # undeformed cell centres and nodes (discretization_grid.f90 IPcoordinates0, nodes0; x fastest)
    d = size / cells
    ix, iy, iz = np.meshgrid(*(np.arange(n) for n in cells), indexing="ij")
    x_p0 = cell_order(np.stack([ix, iy, iz], axis=-1) + 0.5) * d
    nx, ny, nz = np.meshgrid(*(np.arange(n + 1) for n in cells), indexing="ij")
    x_n0 = cell_order(np.stack([nx, ny, nz], axis=-1)) * d

    path = Path(path)
    with h5py.File(path, "w") as f:
        f.attrs.create("DADF5_version_major", 0, dtype="<i4")
        f.attrs.create("DADF5_version_minor", 14, dtype="<i4")
        _attr_str(f, "creator", f"{command[0]} {version}")
        _attr_str(f, "created", now())
        _attr_str(f, "call", " ".join(command))

        cell_to = f.create_group("cell_to")
        _attr_str(cell_to, "description", "mappings to place data in space")
        s = f.create_group("setup")
        _attr_str(s, "description", "input data used to run the simulation")
        files = dict(setup or {})
        if materials is not None:
            files = {"material.yaml": materials, **files}
        for name, text in files.items():
            _string_dataset(s, name, text, _setup_description(name), version)

        g = f.create_group("geometry")
        g.attrs.create("cells", cells, dtype="<i4")
        g.attrs.create("size", size, dtype="<f8")
        g.attrs.create("origin", np.asarray(origin, dtype=np.float64).reshape(3), dtype="<f8")

        _mapping_dataset(
            cell_to,
            "phase",
            np.full((n_cells, 1), phase),
            np.arange(n_cells)[:, None],
            "cell ID and constituent ID to phase results",
            version,
        )
        _mapping_dataset(
            cell_to,
            "homogenization",
            np.full(n_cells, homogenization),
            np.arange(n_cells),
            "cell ID to homogenization results",
            version,
        )

        for k, (inc, tk) in enumerate(zip(incs, t)):
            grp = f.create_group(f"increment_{inc}")
            grp.attrs.create("t/s", tk, dtype="<f8")
            mech = grp.create_group(f"phase/{phase}/mechanical")
            _real_dataset(mech, "F", F[k], "deformation gradient", "1", version)
            _real_dataset(mech, "P", P[k], "first Piola-Kirchhoff stress", "Pa", version)
            grp.create_group(f"homogenization/{homogenization}/mechanical")
            geo = grp.create_group("geometry")
            A = F[k].mean(axis=0) - np.eye(3)
            un = x_n0 @ A.T if u_n is None else np.asarray(u_n[k])
            up = x_p0 @ A.T if u_p is None else np.asarray(u_p[k])
            _real_dataset(geo, "u_n", un, "displacements of the nodes", "m", version)
            _real_dataset(geo, "u_p", up, "displacements of the materialpoints (cell centers)", "m", version)
    return path


# ------------------------------------------------------------------------- job.sta
def _fortran_real(x: float) -> str:
    """gfortran list-directed REAL(8): 17 significant digits, no exponent for 0.1 <= |x| < 1e16."""
    if x == 0:
        return "0.0000000000000000"
    return f"{x:.{max(0, 16 - math.floor(math.log10(abs(x))))}f}"


def format_sta(rows: Sequence[tuple[int, float, int, bool, int, int]]) -> str:
    """Text of a DAMASK_grid 3.0.x .sta file: header, then one row per converged (sub)increment.

    rows: (increment, time, cutback level, converged, iterations, staggered iterations),
    written as gfortran list-directed output (``write(statUnit,*)``) lays them out (the
    layout of tests/data/damask_inputs/*.sta).
    """
    lines = [STA_HEADER]
    for inc, time, cut, conv, its, stag in rows:
        lines.append(f"{inc:12d}{_fortran_real(time):>21s}{'':5s}{cut:12d} {'T' if conv else 'F'}{its:12d}{stag:12d}")
    return "\n".join(lines) + "\n"
