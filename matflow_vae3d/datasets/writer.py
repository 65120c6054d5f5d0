"""Writing and appending VE datasets (:func:`write_ves`), crash-safe commits."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..microstructure.volume_element import VolumeElement
from .codec import _encode, _n_threads
from .euler import eulers_norm_of
from .layout import (
    _COMMIT_ATTR,
    _DEFAULT_LEVEL,
    COMPRESSIONS,
    FORMAT,
    FORMAT_VERSION,
    VE_ID_BYTES,
    ZSTD_FILTER_ID,
    _check_format,
    _open_h5,
)
from .reader import VEDataset


# ----------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------
def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def grain_dtype_for(n_voxels: int, max_grains: int) -> np.dtype:
    """Smallest unsigned int dtype for grain maps of ``n_voxels`` cells.

    uint8 when every voxel index fits; uint16 when the grain count (with a factor 2
    margin for later appends) fits; else uint32.
    """
    if n_voxels <= 256:
        return np.dtype(np.uint8)
    if n_voxels <= 65536 or 2 * max_grains <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def _peek(ves: Iterable) -> tuple[Any, Iterator]:
    it = iter(ves)
    try:
        first = next(it)
    except StopIteration:
        return None, iter(())

    def chain():
        yield first
        yield from it

    return first, chain()


def _create_layout(
    f: h5py.File, first: VolumeElement, *, compression: str, level, orientation_dtype, grain_dtype
) -> None:
    grid = first.grid
    a = f.attrs
    a["format"] = FORMAT
    a["format_version"] = FORMAT_VERSION
    a["lattice"] = first.lattice
    a["grid"] = np.array(grid, dtype=np.int64)
    a[_COMMIT_ATTR] = 0
    a["compression"] = compression
    a["compression_level"] = -1 if level is None else int(level)
    try:
        from importlib.metadata import version

        a["created_by"] = f"matflow-vae3d {version('matflow-vae3d')}"
    except Exception:  # pragma: no cover
        a["created_by"] = "matflow-vae3d"
    gd = np.dtype(grain_dtype) if grain_dtype is not None else grain_dtype_for(int(np.prod(grid)), first.n_grains)
    a["grain_dtype"] = gd.name
    kw: dict[str, Any] = {}
    if compression == "gzip":
        kw = dict(compression="gzip", compression_opts=int(level))
    elif compression == "zstd":
        kw = dict(compression=ZSTD_FILTER_ID, compression_opts=(int(level),), allow_unknown_filter=True)
    elif compression == "lzf":
        kw = dict(compression="lzf")
    f.create_dataset("grain_maps", shape=(0,) + grid, maxshape=(None,) + grid, chunks=(1,) + grid, dtype=gd, **kw)
    f.create_dataset("grain_offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(4096,))
    od = np.dtype(orientation_dtype)
    if od not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"orientation_dtype must be float32 or float64, got {od}")
    f.create_dataset("quaternions", shape=(0, 4), maxshape=(None, 4), chunks=(4096, 4), dtype=od)
    f.create_dataset("eulers_norm", shape=(0, 3), maxshape=(None, 3), chunks=(4096, 3), dtype=np.float32)
    sdt = h5py.string_dtype("utf-8", VE_ID_BYTES)
    f.create_dataset("ve_id", shape=(0,), maxshape=(None,), chunks=(1024,), dtype=sdt)
    f.create_dataset("params_json", shape=(0,), maxshape=(None,), chunks=(65536,), dtype=np.uint8, compression="gzip")
    f.create_dataset("params_offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(4096,))
    f.create_dataset("seed", shape=(0,), maxshape=(None,), chunks=(4096,), dtype=np.int64)
    f.create_dataset("size", shape=(0, 3), maxshape=(None, 3), chunks=(4096, 3), dtype=np.float64)


class _Appender:
    """Writes VEs after the committed rows of an open dataset file."""

    def __init__(self, f: h5py.File, path, threads: int):
        self.f = f
        self.path = path
        a = f.attrs
        self.lattice = str(a["lattice"])
        self.grid = tuple(int(n) for n in a["grid"])
        self.compression = str(a.get("compression", "gzip"))
        lvl = int(a.get("compression_level", -1))
        self.level = None if lvl < 0 else lvl
        self.n0 = int(a[_COMMIT_ATTR])
        self.gm = f["grain_maps"]
        self.dtype = self.gm.dtype
        self.max_grains = int(np.iinfo(self.dtype).max) + 1
        self.direct = self.compression in ("gzip", "zstd", "none")
        off = f["grain_offsets"][: self.n0 + 1]
        self.g0 = int(off[-1])
        self.p0 = int(f["params_offsets"][self.n0])
        self.truncate()
        ids = f["ve_id"][: self.n0]
        self.ids = {s.decode() if isinstance(s, bytes) else str(s) for s in ids}
        self.n = self.n0
        self.g = self.g0
        self.p = self.p0
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads) if threads > 1 and self.direct else None

    def truncate(self) -> None:
        """Drop rows beyond the committed count (from an interrupted append)."""
        f = self.f
        for name in ("grain_maps", "ve_id", "seed", "size"):
            f[name].resize(self.n0, axis=0)
        f["grain_offsets"].resize(self.n0 + 1, axis=0)
        f["params_offsets"].resize(self.n0 + 1, axis=0)
        f["params_json"].resize(self.p0, axis=0)
        f["quaternions"].resize(self.g0, axis=0)
        f["eulers_norm"].resize(self.g0, axis=0)

    def check(self, ve, k: int) -> VolumeElement:
        if not isinstance(ve, VolumeElement):
            raise TypeError(f"VE {k}: expected a VolumeElement, got {type(ve).__name__}")
        name = ve.ve_id if ve.ve_id is not None else f"#{k}"
        if ve.lattice != self.lattice:
            raise ValueError(
                f"VE {name}: lattice {ve.lattice} differs from the file's {self.lattice} "
                f"({self.path}); all VEs in a dataset share one crystal structure"
            )
        if ve.grid != self.grid:
            raise ValueError(
                f"VE {name}: grid {ve.grid} differs from the file's {self.grid} "
                f"({self.path}); all VEs in a dataset share one grid"
            )
        if ve.n_grains > self.max_grains:
            raise ValueError(
                f"VE {name}: {ve.n_grains} grains do not fit the file's {self.dtype} grain "
                f"index; write it to a new dataset"
            )
        norms = np.linalg.norm(ve.quaternions, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-4):
            raise ValueError(
                f"VE {name}: quaternions are not unit quaternions (norms in [{norms.min():.4g}, {norms.max():.4g}])"
            )
        if ve.ve_id is None:
            ve = dataclasses.replace(ve, ve_id=f"ve-{self.n + k:06d}")
        if not isinstance(ve.ve_id, str) or not ve.ve_id:
            raise ValueError(f"VE {k}: ve_id must be a non-empty string, got {ve.ve_id!r}")
        if len(ve.ve_id.encode("utf-8")) > VE_ID_BYTES:
            raise ValueError(f"VE id {ve.ve_id[:40]!r}... is longer than {VE_ID_BYTES} bytes")
        if ve.ve_id in self.ids:
            raise ValueError(f"duplicate VE id {ve.ve_id!r}: ids must be unique in {self.path}")
        return ve

    def write_block(self, ves: list[VolumeElement]) -> None:
        f = self.f
        n, m = self.n, len(ves)
        counts = np.array([ve.n_grains for ve in ves], dtype=np.int64)
        G = int(counts.sum())
        pj = [json.dumps(ve.params, sort_keys=True, default=_json_default).encode("utf-8") for ve in ves]
        plen = np.array([len(b) for b in pj], dtype=np.int64)
        P = int(plen.sum())
        for name in ("grain_maps", "ve_id", "seed", "size"):
            f[name].resize(n + m, axis=0)
        f["grain_offsets"].resize(n + m + 1, axis=0)
        f["params_offsets"].resize(n + m + 1, axis=0)
        f["params_json"].resize(self.p + P, axis=0)
        f["quaternions"].resize(self.g + G, axis=0)
        f["eulers_norm"].resize(self.g + G, axis=0)
        # grain maps
        if self.direct:

            def enc(ve):
                return _encode(
                    np.ascontiguousarray(ve.grain_map, dtype=self.dtype).tobytes(), self.compression, self.level
                )

            blobs = list(self.pool.map(enc, ves)) if self.pool else [enc(v) for v in ves]
            for k, b in enumerate(blobs):
                self.gm.id.write_direct_chunk((n + k, 0, 0, 0), b)
        else:
            self.gm[n : n + m] = np.stack([ve.grain_map.astype(self.dtype) for ve in ves])
        # tables
        q = np.concatenate([ve.quaternions for ve in ves])
        f["quaternions"][self.g : self.g + G] = q.astype(f["quaternions"].dtype)
        f["eulers_norm"][self.g : self.g + G] = eulers_norm_of(q)
        f["grain_offsets"][n + 1 : n + m + 1] = self.g + np.cumsum(counts)
        f["ve_id"][n : n + m] = [ve.ve_id for ve in ves]
        if P:
            f["params_json"][self.p : self.p + P] = np.frombuffer(b"".join(pj), np.uint8)
        f["params_offsets"][n + 1 : n + m + 1] = self.p + np.cumsum(plen)
        f["seed"][n : n + m] = [-1 if ve.seed is None else int(ve.seed) for ve in ves]
        f["size"][n : n + m] = np.stack([ve.size for ve in ves])
        self.ids.update(str(ve.ve_id) for ve in ves)
        self.n += m
        self.g += G
        self.p += P

    def commit(self) -> None:
        self.f.flush()
        self.f.attrs[_COMMIT_ATTR] = self.n
        self.f.flush()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def write_ves(
    path,
    ves: Iterable[VolumeElement],
    *,
    append: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    total: int | None = None,
    compression: str = "zstd",
    compression_level: int | None = None,
    orientation_dtype="float32",
    grain_dtype=None,
    block: int = 32,
    threads: int | None = None,
) -> int:
    """Write VEs to an HDF5 VE dataset; return the number written.

    Parameters
    ----------
    path : str or Path
        Target file. A new file is written to a temporary file in the same directory
        and renamed over ``path`` when complete (atomic).
    ves : iterable of VolumeElement
        All with the same lattice and grid (also as the file's, when appending), with
        unique ``ve_id`` (None gets ``ve-NNNNNN``), quaternions FZ-reduced.
    append : bool
        Add to an existing dataset (created when missing). All-or-nothing: the
        committed count is updated last, so an interrupted append leaves the file
        with its previous content.
    overwrite : bool
        Replace an existing file (the old file stays until the new one is complete).
    progress : bool
        Show a tqdm progress bar.
    total : int, optional
        Number of VEs, for the progress bar.
    compression : {'zstd', 'gzip', 'lzf', 'none'}
        Grain-map chunk codec for a new file (an append uses the file's). 'zstd'
        (default; HDF5 filter 32015) is as compact as gzip and decodes ~2.5x faster,
        but other HDF5 tools need the filter plugin (``import hdf5plugin``) to read
        it; 'gzip' is readable by any HDF5 tool; 'lzf' cannot be decoded in threads;
        'none' is fastest and ~3.5x larger. See docs/datasets.md.
    compression_level : int, optional
        gzip 1-9 (default 4), zstd 1-22 (default 6).
    orientation_dtype : 'float32' or 'float64'
        Storage of the quaternions (new files).
    grain_dtype : numpy dtype, optional
        Override the grain-map dtype of a new file (default: smallest sufficient).
    block : int
        VEs buffered per write.
    threads : int, optional
        Compression threads (default: all cores).

    Raises
    ------
    FileExistsError
        ``path`` exists and neither ``append`` nor ``overwrite`` is set.
    ValueError
        Mismatched lattice or grid, duplicate ids, non-unit quaternions, a foreign
        file, or no VEs for a new file.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    if append and overwrite:
        raise ValueError("choose one of append and overwrite, not both")
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}: use one of {', '.join(COMPRESSIONS)}")
    level = _DEFAULT_LEVEL[compression] if compression_level is None else int(compression_level)
    if compression == "gzip" and level is not None and not 0 <= level <= 9:
        raise ValueError(f"gzip level must be 0-9, got {compression_level}")
    if compression == "zstd":
        import zstandard  # noqa: F401  (fail early with ImportError)
    threads = threads or _n_threads()
    exists = path.exists()
    if exists and not (append or overwrite):
        raise FileExistsError(
            f"{path} exists: pass append=True (--append) to add VEs to it or overwrite=True (--overwrite) to replace it"
        )
    if path.is_dir():
        raise ValueError(f"{path} is a directory")

    first, stream = _peek(ves)
    bar = tqdm(total=total, desc=f"writing {path.name}", unit="VE", disable=not progress)

    def run(f: h5py.File) -> int:
        app = _Appender(f, path, threads)
        try:
            buf: list[VolumeElement] = []
            k = 0
            seen: set[str] = set()
            for ve in stream:
                ve = app.check(ve, k)
                if ve.ve_id in seen:
                    raise ValueError(f"duplicate VE id {ve.ve_id!r} among the VEs written")
                seen.add(str(ve.ve_id))
                buf.append(ve)
                k += 1
                if len(buf) >= block:
                    app.write_block(buf)
                    bar.update(len(buf))
                    buf = []
            if buf:
                app.write_block(buf)
                bar.update(len(buf))
            app.commit()
            return app.n - app.n0
        except BaseException:
            try:  # leave the committed content only
                app.truncate()
                f.flush()
            except Exception:
                pass
            raise
        finally:
            app.close()

    try:
        if append and exists:
            with _open_h5(path, "r") as f:  # refuse foreign files before writing
                _check_format(f, path)
            if first is None:
                return 0
            with h5py.File(path, "r+") as f:
                return run(f)
        if first is None:
            raise ValueError("no VEs to write: cannot create an empty VE dataset")
        if not isinstance(first, VolumeElement):
            raise TypeError(f"expected VolumeElements, got {type(first).__name__}")
        from ..fileio import atomic_output

        with atomic_output(path) as tmp:
            with h5py.File(tmp, "w") as f:
                _create_layout(
                    f,
                    first,
                    compression=compression,
                    level=level,
                    orientation_dtype=orientation_dtype,
                    grain_dtype=grain_dtype,
                )
                n = run(f)
        return n
    finally:
        bar.close()


def dataset_info(path) -> dict:
    """Summary of a VE dataset: count, lattice, grid, storage and bytes per VE."""
    path = Path(path)
    with VEDataset(path) as ds:
        n = len(ds)
        ng = ds.n_grains
        return {
            "path": str(path),
            "n_ves": n,
            "lattice": ds.lattice,
            "grid": ds.grid,
            "compression": ds.compression,
            "grain_dtype": ds._dtype.name,
            "grains_per_ve_mean": float(ng.mean()) if n else math.nan,
            "file_bytes": path.stat().st_size,
            "bytes_per_ve": path.stat().st_size / n if n else math.nan,
        }
