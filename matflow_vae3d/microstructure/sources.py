"""Volume elements from any file the package reads: format detection by extension
(and content, for HDF5) and loading, shared by every command and action that accepts
"VEs" (a VE dataset, a DAMASK ``.vti`` + ``material.yaml``, a DREAM.3D file, or a
MatFlow ``volume_element``)."""

from __future__ import annotations

import contextlib
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


#: suffixes of the files a folder of VEs is searched for (DAMASK material files excluded)
VE_SUFFIXES = (".h5", ".hdf5", ".hdf", ".vti", ".dream3d", ".json", ".yaml", ".yml", ".npz")


def expand_sources(paths) -> list[Path]:
    """The VE files named by ``paths`` (one path or several): a file as it is, a folder
    as its VE files sorted by name (DAMASK ``*material.yaml`` files, which belong to a
    .vti, are not VEs). FileNotFoundError / ValueError naming the path."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f
                for f in p.iterdir()
                if f.is_file()
                and f.suffix.lower() in VE_SUFFIXES
                and not f.stem.lower().endswith("material")
                and not f.name.endswith(".creating")
            )
            if not found:
                raise ValueError(f"{p} holds no VE files ({', '.join(VE_SUFFIXES)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"VEs not found: {p}")
    if not out:
        raise ValueError("no VE file given")
    return out


def describe(paths) -> str:
    """The user's name for a set of VE files, for messages: 'ex.vti', 'ves/', 'a.vti and 2 more'."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        p = paths[0]
        return f"{p.name}/" if p.is_dir() else p.name
    return f"{paths[0].name} and {len(paths) - 1} more"


@contextlib.contextmanager
def as_ve_dataset(paths, *, material=None, lattice=None):
    """One VE dataset for the VEs of ``paths``, for every command that takes VEs.

    paths : a VE dataset, a DAMASK .vti (+ its material.yaml: ``material``, or beside
        it), a DREAM.3D file, a MatFlow volume_element (.json/.yaml/.npz), a folder of
        such files, or several of these.
    Yields (path of a VE dataset, label): a single VE dataset is used as it is;
    anything else is read by :func:`load_ves` into a temporary dataset (deleted on
    exit), every VE keeping its id (a single-VE file: its file name). ``label`` names
    the user's files for messages (:func:`describe`); errors while reading name the
    file they come from, never the temporary one.
    """
    import tempfile

    files = expand_sources(paths)
    label = describe(paths)
    if len(files) == 1 and detect_format(files[0]) == "dataset":
        yield files[0], label
        return
    from ..datasets import write_ves

    def stream():
        for f in files:
            fmt = detect_format(f)
            try:
                _, ves = load_ves(f, fmt, lattice=lattice, material=material if fmt == "damask" else None)
                for ve in ves:
                    if ve.ve_id is None:
                        ve.ve_id = f.stem
                    yield ve
            except (ValueError, KeyError, OSError) as exc:
                msg = str(exc).strip("'\"")
                raise ValueError(msg if f.name in msg else f"{f.name}: {msg}") from None

    with tempfile.TemporaryDirectory(prefix="vae3d-ves-") as tmp:
        path = Path(tmp) / "ves.h5"
        try:
            write_ves(path, stream(), progress=False, compression="none")
        except ValueError as exc:
            msg = str(exc).replace(str(path), label)
            raise ValueError(msg) from None
        yield path, label
