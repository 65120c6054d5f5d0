"""Volume elements from any file the package reads: format detection by extension
(and content, for HDF5) and loading, shared by every command and action that accepts
"VEs" (a VE dataset, a DAMASK ``.vti`` + ``material.yaml``, a DREAM.3D file, or a
MatFlow ``volume_element``)."""

from __future__ import annotations

from pathlib import Path

#: file formats VEs are read from (and ``vae3d convert`` writes)
FORMATS = ("dataset", "damask", "dream3d", "matflow")
_SUFFIX_FORMAT = {
    ".vti": "damask",
    ".dream3d": "dream3d",
    ".json": "matflow",
    ".yaml": "matflow",
    ".yml": "matflow",
    ".npz": "matflow",
}


def detect_format(path: Path, must_exist: bool = True) -> str:
    """File format of ``path``: 'dataset', 'damask', 'dream3d' or 'matflow'."""
    suffix = path.suffix.lower()
    if suffix in _SUFFIX_FORMAT:
        return _SUFFIX_FORMAT[suffix]
    if suffix in (".h5", ".hdf5", ".hdf"):
        if not path.exists():
            if must_exist:
                raise FileNotFoundError(f"{path} does not exist")
            return "dataset"
        import h5py

        if not h5py.is_hdf5(path):
            raise ValueError(f"{path} is not an HDF5 file")
        with h5py.File(path, "r") as f:
            if "FileVersion" in f.attrs:
                return "dream3d"
        return "dataset"  # VEDataset names a foreign file clearly
    raise ValueError(
        f"cannot tell the format of {path.name!r} from its extension: use .h5 (VE "
        f"dataset), .vti (DAMASK), .dream3d (DREAM.3D), .json/.yaml/.npz (MatFlow "
        f"volume_element), or pass --from/--to"
    )


def material_for(vti: Path, material: Path | None) -> Path:
    """The DAMASK material.yaml of ``vti``: ``material`` when given, else
    ``<stem>_material.yaml`` or ``material.yaml`` beside it."""
    if material is not None:
        return material
    for cand in (vti.with_name(f"{vti.stem}_material.yaml"), vti.with_name("material.yaml")):
        if cand.exists():
            return cand
    raise FileNotFoundError(
        f"no material file for {vti}: looked for {vti.stem}_material.yaml and material.yaml next to it; "
        "give its path (--material)"
    )


def load_ves(src: Path, fmt: str, *, indices=(), ve_ids=(), lattice=None, material=None):
    """VEs selected from ``src`` as (count, iterator); a VE dataset is read lazily
    (all its VEs unless indices/ve_ids are given)."""
    from . import io

    if fmt == "dataset":
        from ..datasets import VEDataset

        ds = VEDataset(src)
        try:
            sel = [ds._index(i) for i in indices] + [ds.index_of(v) for v in ve_ids]
        except Exception:
            ds.close()
            raise
        if not sel:
            sel = list(range(len(ds)))

        def it():
            try:
                for i in sel:
                    yield ds[i]
            finally:
                ds.close()

        return len(sel), it()
    if indices or ve_ids:
        raise ValueError(f"--index/--ve-id select VEs of a VE dataset; {src} holds one VE")
    if fmt == "damask":
        ve = io.load_damask(src, material_for(src, material), lattice=lattice)
    elif fmt == "dream3d":
        ve = io.load_dream3d(src, lattice=lattice)
    elif fmt == "matflow":
        ve = io.from_matflow_volume_element(io.load_matflow_volume_element(src), lattice=lattice)
        ve.ve_id = src.stem
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return 1, iter([ve])
