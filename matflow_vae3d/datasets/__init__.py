"""VE datasets: a compact HDF5 store of volume elements, and fast batched reading.

A VE dataset stores what defines each VE (per-voxel grain index, one orientation
per grain, crystal structure, generator parameters and seed), never a float Euler
image. The (3, nx, ny, nz) normalised Euler image the VAE sees is expanded on the fly
by :meth:`VEBatch.to_tensor`, on the GPU when there is one.

Layout (``format = "matflow-vae3d/ve-dataset"``, ``format_version = 1``)::

    /                     attrs: format, format_version, lattice, grid (3,),
                                 n_ves (committed count, written last), grain_dtype,
                                 compression, compression_level, created_by
    grain_maps            (N, nx, ny, nz) uint8/uint16/uint32, one VE per chunk,
                          compressed (zstd by default, or gzip/lzf/none);
                          local 0-based grain index
    grain_offsets         (N + 1,) int64; VE i's grains are rows
                          grain_offsets[i]:grain_offsets[i + 1] of the two tables below
    quaternions           (G, 4) float32 (or float64), (w, x, y, z), P = -1,
                          reduced to the fundamental zone
    eulers_norm           (G, 3) float32, FZ Bunge angles / (2 pi, pi, 2 pi), in [0, 1]
    ve_id                 (N,) fixed-length (128 B) UTF-8 str, unique in the file
    seed                  (N,) int64, -1 where None
    params_json           (P,) uint8, UTF-8 JSON of the generator parameters of all
                          VEs concatenated; VE i's are bytes
                          params_offsets[i]:params_offsets[i + 1]
    params_offsets        (N + 1,) int64
    size                  (N, 3) float64, m

No variable-length strings are used: their global heap is not crash-safe (after a
hard kill during an append, the next append could fail with "bad heap index").

Rows beyond the root attribute ``n_ves`` are ignored by readers and truncated by the
next append: ``n_ves`` is updated after all rows of an append are written and flushed,
so an interrupted append leaves the previous content readable. New files are written
to a temporary file in the same directory and then renamed over the target (atomic).

Reading decompresses the grain-map chunks in a thread pool (``read_direct_chunk`` +
zlib/zstandard, which release the GIL), so several cores are used by one process.

One job per module: :mod:`.layout` (format constants, the file check), :mod:`.euler`
(the normalised Euler image), :mod:`.batch` (batches and their expansion on the
device), :mod:`.codec` (chunk codecs), :mod:`.reader` (:class:`VEDataset`),
:mod:`.torch_data` (:class:`VETorchDataset`), :mod:`.writer` (:func:`write_ves`).
"""

from .batch import VEBatch, collate_ves
from .euler import euler_image, eulers_norm_of
from .layout import COMPRESSIONS, EULER_SCALE, FORMAT, FORMAT_VERSION, VE_ID_BYTES, ZSTD_FILTER_ID
from .reader import VEDataset, open_dataset
from .torch_data import VETorchDataset
from .writer import dataset_info, grain_dtype_for, write_ves

__all__ = [
    "COMPRESSIONS",
    "EULER_SCALE",
    "FORMAT",
    "FORMAT_VERSION",
    "VE_ID_BYTES",
    "ZSTD_FILTER_ID",
    "VEBatch",
    "VEDataset",
    "VETorchDataset",
    "collate_ves",
    "dataset_info",
    "euler_image",
    "eulers_norm_of",
    "grain_dtype_for",
    "open_dataset",
    "write_ves",
]
