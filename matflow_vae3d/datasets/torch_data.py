"""The map-style torch dataset over a VE dataset file (torch itself is not imported)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .batch import _in_worker
from .reader import VEDataset


# ----------------------------------------------------------------------------------
# torch data
# ----------------------------------------------------------------------------------
class VETorchDataset:
    """Map-style torch dataset over a VE dataset file (torch's map-style protocol:
    ``__len__``/``__getitem__``/``__getitems__``; torch itself is not imported).

    Items are compact per-VE dicts (see :meth:`VEDataset.read_sample`); use
    :func:`collate_ves` as the DataLoader ``collate_fn`` and
    :meth:`VEBatch.to_tensor` on the training device. The HDF5 file is opened
    lazily in each process (so DataLoader workers each have their own handle).
    ``__getitems__`` reads a whole batch at once with threaded decompression.

    Parameters
    ----------
    path : str or Path
        VE dataset file.
    indices : sequence of int, optional
        Subset of rows (default all), e.g. a train/validation split.
    threads : int, optional
        Decompression threads per process (default: 1 inside DataLoader worker
        processes, all cores in the main process).
    """

    def __init__(self, path, indices=None, threads: int | None = None):
        self.path = Path(path)
        with VEDataset(self.path) as ds:  # validate now, in the parent process
            n = len(ds)
            self.lattice, self.grid = ds.lattice, ds.grid
        if indices is None:
            self.indices = np.arange(n, dtype=np.int64)
        else:
            self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
            if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
                raise IndexError(f"indices out of range for a dataset of {n} VEs")
        self.threads = threads
        self._ds: VEDataset | None = None
        self._pid: int | None = None

    def _dataset(self) -> VEDataset:
        if self._ds is None or self._pid != os.getpid():
            threads = self.threads
            if threads is None and _in_worker():
                threads = 1  # the DataLoader's worker processes are the parallelism
            self._ds = VEDataset(self.path, threads=threads)
            self._pid = os.getpid()
        return self._ds

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k) -> dict:
        return self._dataset().read_sample(self.indices[k])

    def __getitems__(self, ks) -> list[dict]:
        return self._dataset().read_samples(self.indices[np.asarray(ks, dtype=np.int64)])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_ds"] = None
        state["_pid"] = None
        return state
