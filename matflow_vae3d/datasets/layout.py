"""The VE dataset file's format constants and the one check that a file is one
(see the package docstring for the layout)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

FORMAT = "matflow-vae3d/ve-dataset"
FORMAT_VERSION = 1

#: divisor that maps FZ Bunge angles (phi1, Phi, phi2) into [0, 1].
EULER_SCALE = np.array([2.0 * np.pi, np.pi, 2.0 * np.pi])

#: storage options for grain maps: name -> h5py create_dataset keywords.
COMPRESSIONS = ("gzip", "zstd", "lzf", "none")
_DEFAULT_LEVEL = {"gzip": 4, "zstd": 6, "lzf": None, "none": None}
#: registered HDF5 filter id of Zstandard (readable with ``import hdf5plugin``).
ZSTD_FILTER_ID = 32015

_COMMIT_ATTR = "n_ves"
#: maximum length of a VE id (UTF-8 bytes; fixed-length strings, see the layout)
VE_ID_BYTES = 128


# ----------------------------------------------------------------------------------
# file validation
# ----------------------------------------------------------------------------------
def _check_format(f: h5py.File, path) -> None:
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        found = "no 'format' attribute" if fmt is None else f"format {fmt!r}"
        raise ValueError(f"{path} is an HDF5 file but not a matflow-vae3d VE dataset ({found}; expected {FORMAT!r})")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: VE dataset format_version {version} is not supported "
            f"(this version of matflow-vae3d reads version {FORMAT_VERSION})"
        )
    for name in (
        "grain_maps",
        "grain_offsets",
        "quaternions",
        "eulers_norm",
        "ve_id",
        "seed",
        "params_json",
        "params_offsets",
        "size",
    ):
        if name not in f:
            raise ValueError(f"{path}: VE dataset is missing the dataset {name!r}")


def _open_h5(path, mode="r") -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"VE dataset {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a VE dataset file")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file (expected a VE dataset)")
    return h5py.File(path, mode)
