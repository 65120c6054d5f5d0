"""Batches of VEs as they come off a dataset, expanded into model images on the device."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..microstructure.volume_element import VolumeElement


# ----------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------
def _as_tensor(x, device, dtype=None):
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    non_blocking = t.is_pinned() if t.device.type == "cpu" else False
    t = t.to(device=device, non_blocking=non_blocking)
    return t if dtype is None else t.to(dtype)


def _index_tensor(x, device):
    """Compact grain indices (numpy uint8/16/32 or tensor) -> tensor on ``device`` in a
    dtype torch ships everywhere (uint8, int16 bit pattern, int32); widened there."""
    import torch

    if not isinstance(x, torch.Tensor):
        x = np.ascontiguousarray(x)
        if x.dtype == np.uint16:
            x = x.view(np.int16)  # same bytes; widened with & 0xFFFF on the device
        elif x.dtype == np.uint32:
            x = x.view(np.int32)  # grain counts < 2**31
        x = torch.from_numpy(x)
    non_blocking = x.is_pinned() if x.device.type == "cpu" else False
    return x.to(device=device, non_blocking=non_blocking)


def _widen(t):
    import torch

    if t.dtype == torch.int16:
        return t.to(torch.int32) & 0xFFFF
    if t.dtype in (torch.int32, torch.int64):
        return t
    return t.to(torch.int32)


@dataclasses.dataclass
class VEBatch:
    """A batch of VEs in compact form: grain maps plus a per-grain table.

    Attributes
    ----------
    local_maps : (B, nx, ny, nz) uint8/uint16/uint32
        Grain index of each voxel LOCAL to its VE, in the dataset's storage dtype
        (VE b's grain k is table row ``offsets[b] + k``). Kept compact so that it is
        what crosses to the GPU.
    eulers_norm : (G_total, 3) float32
        FZ Bunge angles / (2 pi, pi, 2 pi) of every grain of the batch, in [0, 1].
    quaternions : (G_total, 4) float32
        Orientation of every grain, (w, x, y, z), P = -1, FZ-reduced.
    ve_ids : list[str]
        Id of each VE.
    offsets : (B + 1,) int64
        Start row of each VE's grains in the tables.
    indices : (B,) int64 or None
        Row of each VE in its dataset file, when read from one.

    ``grain_maps`` gives the (B, nx, ny, nz) int32 GLOBAL indices into the tables
    (computed on first use). The arrays are numpy arrays; batches collated inside
    DataLoader workers and after :meth:`pin_memory` hold torch CPU tensors instead
    (uint16 maps as an int16 bit pattern); all methods accept either.
    """

    local_maps: Any
    eulers_norm: Any
    quaternions: Any
    ve_ids: list
    offsets: Any
    indices: Any = None

    def __len__(self) -> int:
        return len(self.ve_ids)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Cells per direction (nx, ny, nz)."""
        nx, ny, nz = (int(n) for n in self.local_maps.shape[1:])
        return nx, ny, nz

    def _offsets(self) -> list[int]:
        o = self.offsets
        return [int(v) for v in (o.tolist() if hasattr(o, "tolist") else o)]

    @property
    def grain_maps(self):
        """(B, nx, ny, nz) int32 grain indices GLOBAL into the batch tables (numpy, or a
        tensor on the maps' device when the batch holds tensors)."""
        cached = self.__dict__.get("_global")
        if cached is None:
            off = self._offsets()
            if isinstance(self.local_maps, np.ndarray):
                lm = self.local_maps
                cached = np.empty(lm.shape, dtype=np.int32)
                for b in range(len(lm)):
                    # dtype=int32: with a uint16 map and a small offset numpy would
                    # otherwise add in uint16 and wrap around
                    np.add(lm[b], off[b], out=cached[b], dtype=np.int32, casting="unsafe")
            else:
                import torch

                lm = _widen(self.local_maps)
                cached = lm + torch.tensor(off[:-1], dtype=torch.int32, device=lm.device).view(-1, 1, 1, 1)
            self.__dict__["_global"] = cached
        return cached

    def _expand(self, table, device, dtype):
        import torch

        lm = _index_tensor(self.local_maps, device)
        tab = _as_tensor(table, device, dtype)  # (G, C)
        off = self._offsets()
        B, C = lm.shape[0], tab.shape[1]
        tab_t = tab.t().contiguous()  # (C, G): each channel a contiguous 1-D table
        out = torch.empty((B, C) + tuple(lm.shape[1:]), dtype=tab.dtype, device=tab.device)
        # one gather per (VE, channel) from that VE's slice of the table, straight into
        # the (B, C, nx, ny, nz) layout (2.5x faster on CPU than
        # table[global].permute(...).contiguous(), and no global-index pass).
        for b in range(B):
            flat = _widen(lm[b].reshape(-1))
            for c in range(C):
                torch.index_select(tab_t[c, off[b] : off[b + 1]], 0, flat, out=out[b, c].view(-1))
        return out

    def to_tensor(self, device="cpu", dtype=None):
        """Normalised Euler images (B, 3, nx, ny, nz), by default float32, on ``device``.

        Only the compact int grain maps and the small (G_total, 3) table are moved
        to ``device``; the per-voxel gather happens there.
        """
        import torch

        return self._expand(self.eulers_norm, device, dtype or torch.float32)

    def quaternion_image(self, device="cpu", dtype=None):
        """Per-voxel quaternions (B, 4, nx, ny, nz), by default float32, on ``device``."""
        import torch

        return self._expand(self.quaternions, device, dtype or torch.float32)

    def pin_memory(self) -> VEBatch:
        """Copy of the batch with its arrays as pinned torch tensors (for DataLoader
        ``pin_memory=True``; needs CUDA). The grain maps keep their compact dtype
        (uint16 as an int16 bit pattern)."""
        import torch

        def pin(x):
            t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
            return t.pin_memory()

        return dataclasses.replace(
            self,
            local_maps=_index_tensor(self.local_maps, "cpu").pin_memory(),
            eulers_norm=pin(self.eulers_norm),
            quaternions=pin(self.quaternions),
            offsets=pin(self.offsets),
        )

    def volume_element(self, b: int, lattice: str = "cF") -> VolumeElement:
        """VE ``b`` of the batch as a :class:`VolumeElement`."""
        off = self._offsets()
        lo, hi = off[b], off[b + 1]
        lm = self.local_maps[b]
        if not isinstance(lm, np.ndarray):  # tensor (pinned, from a worker, on a device)
            lm = _widen(lm).cpu().numpy()
        return VolumeElement(
            grain_map=np.asarray(lm).astype(np.int32),
            quaternions=np.asarray(_to_numpy(self.quaternions[lo:hi]), dtype=np.float64),
            lattice=lattice,
            ve_id=self.ve_ids[b],
        )


def collate_ves(samples: Sequence[dict]) -> VEBatch:
    """Merge per-VE samples (as returned by :class:`VETorchDataset`) into a VEBatch.

    Each sample is a dict with ``grain_map`` (nx, ny, nz) local int grain indices,
    ``eulers_norm`` (g, 3), ``quaternions`` (g, 4), ``ve_id`` and ``index``. Usable as
    a DataLoader ``collate_fn`` (also with worker processes).
    """
    if len(samples) == 0:
        raise ValueError("collate_ves needs at least one sample")
    counts = np.array([len(s["eulers_norm"]) for s in samples], dtype=np.int64)
    offsets = np.zeros(len(samples) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError("batch has more grains than int32 indices can address")
    shape = samples[0]["grain_map"].shape
    for s in samples:
        if s["grain_map"].shape != shape:
            raise ValueError(f"samples have different grids: {shape} and {s['grain_map'].shape}")
    dtype = np.result_type(*[s["grain_map"].dtype for s in samples])
    if not np.issubdtype(dtype, np.unsignedinteger):
        dtype = np.dtype(np.int32)
    lm = np.stack([s["grain_map"] for s in samples]).astype(dtype, copy=False)
    batch = VEBatch(
        local_maps=lm,
        eulers_norm=np.concatenate([s["eulers_norm"] for s in samples]).astype(np.float32, copy=False),
        quaternions=np.concatenate([s["quaternions"] for s in samples]).astype(np.float32, copy=False),
        ve_ids=[s["ve_id"] for s in samples],
        offsets=offsets,
        indices=np.array([s.get("index", -1) for s in samples], dtype=np.int64),
    )
    return _tensors_in_worker(batch)


def _to_numpy(x):
    return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)


def _in_worker() -> bool:
    import sys

    if "torch" not in sys.modules:
        return False
    import torch

    return torch.utils.data.get_worker_info() is not None


def _tensors_in_worker(batch: VEBatch) -> VEBatch:
    """Inside a DataLoader worker, hold the arrays as CPU tensors: torch sends those
    to the main process through shared memory instead of pickling them through a
    pipe (measured ~2.7 ms of main-process CPU per 64^3 VE with numpy arrays)."""
    if not _in_worker():
        return batch
    import torch

    return dataclasses.replace(
        batch,
        local_maps=_index_tensor(batch.local_maps, "cpu"),
        eulers_norm=torch.from_numpy(batch.eulers_norm),
        quaternions=torch.from_numpy(batch.quaternions),
        offsets=torch.from_numpy(batch.offsets),
    )
