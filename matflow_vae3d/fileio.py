"""Atomic file output shared by every writer of the package, and the one way readers
open an HDF5 file of one of the package's formats."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike, overwrite: bool = True, overwrite_hint: str = "", keep_suffix: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block ends
    without an exception, delete it otherwise. A killed or failing writer never leaves a
    truncated file under the final name, and an existing file stays untouched.

    overwrite: refuse (FileExistsError) when ``path`` exists and this is False;
    overwrite_hint: how to allow it, appended to that message (e.g. "pass --overwrite").
    keep_suffix: the temporary name ends with ``path``'s suffix (for writers that pick
    the format from it or append it, e.g. damask's ``.vti``, numpy's ``.npz``).
    The file gets the usual umask-derived permissions (mkstemp makes 0600).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        hint = f"; {overwrite_hint}" if overwrite_hint else ""
        raise FileExistsError(f"{path} exists; refusing to overwrite it{hint}")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def open_hdf5(path: str | os.PathLike, what: str):
    """Open ``path`` read-only as an h5py File for a reader of ``what`` (e.g. "CP
    results file"): FileNotFoundError for a missing file, ValueError naming the file
    for one that is not a readable HDF5 file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file (expected a {what})")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc


def save_figure(fig, path: str | os.PathLike, dpi: float | None = None) -> Path:
    """Write a matplotlib figure atomically (:func:`atomic_output`; the format from
    ``path``'s suffix, PNG without one) and close it. Returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)
    return path


#: what each of the package's file formats is, and where it goes (for messages when a
#: file is given to the wrong option)
FORMAT_HINTS = {
    "matflow-vae3d/vae-model": "a VAE checkpoint: give it to vae3d fingerprint/evaluate --model, or predict --vae",
    "matflow-vae3d/surrogate": "a surrogate checkpoint: use it with vae3d predict --model",
    "matflow-vae3d/path-surrogate": "a load-path surrogate checkpoint: use it with vae3d predict-path --model",
    "matflow-vae3d/fingerprints": "a fingerprint file: give it to --fingerprints",
    "matflow-vae3d/ve-dataset": "a VE dataset: give it to --data",
    "matflow-vae3d/cp-results": "a CP results file: give it to --stresses",
    "matflow-vae3d/path-results": "a load-path CP results file: give it to train-path-surrogate --results",
    "matflow-vae3d/workflow-export": "a workflow export (vae3d matflow export)",
}


def file_kind(path: str | os.PathLike, obj=None) -> str:
    """What ``path`` is among the package's formats, as a hint for an error message
    ('' when unknown). ``obj``: its already loaded torch content, if any. Never runs a
    pickle: HDF5 attributes are read, torch files only with ``weights_only``."""
    path = Path(path)
    fmt = None
    if isinstance(obj, dict):
        fmt = obj.get("format") or ("matflow-vae3d/vae-model" if isinstance(obj.get("vae3d"), dict) else None)
    elif path.is_file():
        import h5py

        if h5py.is_hdf5(path):
            try:
                with h5py.File(path, "r") as f:
                    fmt = f.attrs.get("format")
                    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
                    if fmt is None and "FileVersion" in f.attrs:
                        return "a DREAM.3D file: give it to --data"
            except OSError:
                return ""
            if fmt is None:
                return "an HDF5 file of no matflow-vae3d format"
    return FORMAT_HINTS.get(str(fmt), "")
