"""Reading a VE dataset: :class:`VEDataset` (lazy, random access, parallel decompression)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..crystal import canonical_lattice
from ..microstructure.volume_element import VolumeElement
from .batch import VEBatch
from .codec import _decode, _n_threads
from .layout import _COMMIT_ATTR, _check_format, _open_h5


# ----------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------
class VEDataset:
    """Read-only view of a VE dataset file.

    ``len(ds)`` VEs; ``ds[i]`` is a :class:`VolumeElement`; ``ds.read_batch(idx)``
    is a :class:`VEBatch`. Use as a context manager or call :meth:`close`.

    Parameters
    ----------
    path : str or Path
        The HDF5 file written by :func:`write_ves` / ``vae3d generate``.
    threads : int, optional
        Threads used to decompress grain maps in :meth:`read_batch` (default: the
        number of cores this process may use).
    """

    def __init__(self, path, threads: int | None = None):
        self.path = Path(path)
        self._f = _open_h5(self.path, "r")
        try:
            _check_format(self._f, self.path)
            a = self._f.attrs
            self.lattice = canonical_lattice(str(a["lattice"]))
            self.grid = tuple(int(n) for n in a["grid"])
            self._n = int(a[_COMMIT_ATTR])
            self.compression = str(a.get("compression", "gzip"))
            self._gm = self._f["grain_maps"]
            self._offsets = self._f["grain_offsets"][: self._n + 1].astype(np.int64)
            if len(self._offsets) != self._n + 1 or self._gm.shape[0] < self._n:
                raise ValueError(f"{self.path}: VE dataset is truncated or corrupt")
            self._direct = self._gm.chunks == (1,) + self.grid and self.compression in ("gzip", "zstd", "none")
            self._dtype = self._gm.dtype
        except Exception:
            self._f.close()
            raise
        self._threads = threads or _n_threads()
        self._pool = None
        self._ve_ids: list[str] | None = None

    # -- basic -------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the file and the decompression threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._f is not None:
            self._f.close()
            self._f = None

    def __del__(self):  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (
            f"VEDataset({str(self.path)!r}: {self._n} VEs, lattice {self.lattice}, "
            f"grid {self.grid}, {self.compression})"
        )

    def _index(self, i) -> int:
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"VE index {i} out of range for a dataset of {self._n} VEs")
        return i

    def _ids(self) -> list[str]:
        if self._ve_ids is None:
            self._ve_ids = [s.decode() if isinstance(s, bytes) else str(s) for s in self._f["ve_id"][: self._n]]
        return self._ve_ids

    @property
    def ve_ids(self) -> list[str]:
        """Ids of all VEs, in file order."""
        return list(self._ids())

    def index_of(self, ve_id: str) -> int:
        """Row of the VE with id ``ve_id`` (KeyError if absent)."""
        if getattr(self, "_id_index", None) is None:
            self._id_index = {v: k for k, v in enumerate(self._ids())}
        try:
            return self._id_index[ve_id]
        except KeyError:
            raise KeyError(f"no VE with id {ve_id!r} in {self.path}") from None

    @property
    def n_grains(self) -> np.ndarray:
        """(N,) number of grains of each VE."""
        return np.diff(self._offsets)

    def params(self, i) -> dict:
        """Generator parameters (dict) of VE ``i``."""
        i = self._index(i)
        lo, hi = self._f["params_offsets"][i : i + 2]
        return json.loads(self._f["params_json"][lo:hi].tobytes().decode("utf-8"))

    def seed(self, i) -> int | None:
        """Generator seed of VE ``i`` (None for imported VEs)."""
        s = int(self._f["seed"][self._index(i)])
        return None if s < 0 else s

    def size(self, i) -> np.ndarray:
        """Physical size (3,) m of VE ``i``."""
        return self._f["size"][self._index(i)].astype(np.float64)

    # -- grain maps ----------------------------------------------------------------
    def _read_grain_map(self, i: int) -> np.ndarray:
        """Local grain map (nx, ny, nz) in the stored dtype."""
        if self._direct:
            mask, raw = self._gm.id.read_direct_chunk((i, 0, 0, 0))
            if mask == 0:
                buf = _decode(raw, self.compression)
                return np.frombuffer(buf, dtype=self._dtype).reshape(self.grid)
        return self._gm[i]

    def _read_into(self, i: int, out: np.ndarray) -> None:
        out[...] = self._read_grain_map(i)

    def _map(self, fn, items):
        if self._threads <= 1 or len(items) <= 1 or not self._direct:
            return [fn(*it) for it in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads)
        return list(self._pool.map(lambda it: fn(*it), items))

    def _read_tables(self, idx: np.ndarray):
        """Per-grain tables of the VEs ``idx`` concatenated, and their offsets."""
        lo = self._offsets[idx]
        hi = self._offsets[idx + 1]
        counts = hi - lo
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        qd, ed = self._f["quaternions"], self._f["eulers_norm"]
        if len(idx) > 0 and np.all(np.diff(idx) == 1):  # contiguous: one read each
            q = qd[lo[0] : hi[-1]]
            e = ed[lo[0] : hi[-1]]
        else:
            span = (hi.max() - lo.min()) if len(idx) else 0
            if len(idx) and span <= 4 * max(1, counts.sum()):  # read the span, pick rows
                base = lo.min()
                qs, es = qd[base : base + span], ed[base : base + span]
                rows = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) - base
                q, e = qs[rows], es[rows]
            else:
                q = np.concatenate([qd[a:b] for a, b in zip(lo, hi)]) if len(idx) else np.zeros((0, 4), qd.dtype)
                e = np.concatenate([ed[a:b] for a, b in zip(lo, hi)]) if len(idx) else np.zeros((0, 3), ed.dtype)
        return q, e, offsets

    # -- public reading --------------------------------------------------------------
    def __getitem__(self, i) -> VolumeElement:
        """VE ``i`` as a :class:`VolumeElement` (quaternions as stored, float32 by
        default, promoted to float64 and renormalised)."""
        i = self._index(i)
        lo, hi = self._offsets[i], self._offsets[i + 1]
        qs = self._f["quaternions"][lo:hi]
        q = qs.astype(np.float64)
        if qs.dtype != np.float64:  # unit norm again after float32 storage
            q /= np.linalg.norm(q, axis=1, keepdims=True)
        return VolumeElement(
            grain_map=self._read_grain_map(i).astype(np.int32),
            quaternions=q,
            lattice=self.lattice,
            size=self.size(i),
            seed=self.seed(i),
            params=self.params(i),
            ve_id=self._ids()[i],
        )

    def __iter__(self) -> Iterator[VolumeElement]:
        for i in range(len(self)):
            yield self[i]

    def read_sample(self, i) -> dict:
        """Compact arrays of VE ``i``: ``grain_map`` (local, stored dtype),
        ``eulers_norm`` (g, 3) float32, ``quaternions`` (g, 4) float32, ``ve_id``,
        ``index`` (the form :func:`collate_ves` takes)."""
        i = self._index(i)
        lo, hi = self._offsets[i], self._offsets[i + 1]
        return {
            "grain_map": self._read_grain_map(i),
            "eulers_norm": self._f["eulers_norm"][lo:hi],
            "quaternions": self._f["quaternions"][lo:hi].astype(np.float32, copy=False),
            "ve_id": self._ids()[i],
            "index": i,
        }

    def read_samples(self, indices) -> list[dict]:
        """:meth:`read_sample` of several VEs, grain maps decompressed in threads."""
        idx = np.array([self._index(i) for i in np.atleast_1d(indices)], dtype=np.int64)
        q, e, off = self._read_tables(idx)
        maps = self._map(lambda i: self._read_grain_map(i), [(int(i),) for i in idx])
        ids = self._ids()
        return [
            {
                "grain_map": maps[b],
                "eulers_norm": e[off[b] : off[b + 1]],
                "quaternions": q[off[b] : off[b + 1]].astype(np.float32, copy=False),
                "ve_id": ids[i],
                "index": int(i),
            }
            for b, i in enumerate(idx)
        ]

    def read_batch(self, indices) -> VEBatch:
        """VEs ``indices`` as one :class:`VEBatch` (compact local grain maps).

        Grain maps are read chunk by chunk and decompressed in a thread pool.
        """
        idx = np.array([self._index(i) for i in np.atleast_1d(indices)], dtype=np.int64)
        if len(idx) == 0:
            raise ValueError("read_batch needs at least one index")
        q, e, off = self._read_tables(idx)
        if off[-1] > np.iinfo(np.int32).max:
            raise ValueError("batch has more grains than int32 indices can address")
        lm = np.empty((len(idx),) + self.grid, dtype=self._dtype)
        self._map(self._read_into, [(int(i), lm[b]) for b, i in enumerate(idx)])
        ids = self._ids()
        return VEBatch(
            local_maps=lm,
            eulers_norm=np.asarray(e, dtype=np.float32),
            quaternions=np.asarray(q, dtype=np.float32),
            ve_ids=[ids[i] for i in idx],
            offsets=off,
            indices=idx,
        )


def open_dataset(path) -> VEDataset:
    """Open a VE dataset read-only (same as ``VEDataset(path)``)."""
    return VEDataset(path)
