"""VE dataset format: round trips, batched reading, tensor expansion, atomic writes,
safe appends and refusal of bad input."""

from __future__ import annotations

import hashlib
import os

import damask
import h5py
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from matflow_vae3d.datasets import (
    EULER_SCALE,
    VEBatch,
    VEDataset,
    VETorchDataset,
    collate_ves,
    euler_image,
    eulers_norm_of,
    grain_dtype_for,
    write_ves,
)
from matflow_vae3d.microstructure import VolumeElement


def make_ve(n=12, grains=25, seed=0, lattice="cF", ve_id=None, params=None):
    """Periodic Voronoi VE with FZ-reduced random orientations (test fixture)."""
    rng = np.random.default_rng(seed)
    pts = rng.random((grains, 3)) * n
    x = np.stack(np.meshgrid(*[np.arange(n) + 0.5] * 3, indexing="ij"), -1).reshape(-1, 3)
    _, gm = cKDTree(pts, boxsize=n).query(x)
    q = damask.Orientation.from_random(shape=grains, lattice=lattice, rng_seed=seed).reduced.quaternion
    return VolumeElement(
        gm.reshape(n, n, n),
        q,
        lattice,
        size=np.full(3, 1e-5 * (seed + 1)),
        seed=seed,
        params=params if params is not None else {"preset": "test", "grains": grains},
        ve_id=ve_id or f"test-{seed:03d}",
    )


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def ves():
    return [make_ve(seed=s, grains=20 + 3 * s) for s in range(6)]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "lzf", "none"])
def test_round_trip(tmp_path, ves, compression):
    p = tmp_path / "ves.h5"
    assert write_ves(p, ves, compression=compression, progress=False) == len(ves)
    with VEDataset(p) as ds:
        assert len(ds) == len(ves)
        assert ds.lattice == "cF" and ds.grid == (12, 12, 12)
        assert ds.ve_ids == [ve.ve_id for ve in ves]
        for i, ve in enumerate(ves):
            got = ds[i]
            np.testing.assert_array_equal(got.grain_map, ve.grain_map)
            # float32 storage of unit quaternions: ~1e-7 per component
            np.testing.assert_allclose(got.quaternions, ve.quaternions, atol=2e-7)
            assert got.lattice == ve.lattice and got.seed == ve.seed
            assert got.params == ve.params and ds.params(i) == ve.params
            np.testing.assert_allclose(got.size, ve.size)
        assert ds[-1].ve_id == ves[-1].ve_id
        with pytest.raises(IndexError):
            ds[len(ves)]
        # the file stays a plain HDF5 file: gzip/lzf/none chunks read with h5py too
        if compression != "zstd":
            with h5py.File(p) as f:
                np.testing.assert_array_equal(f["grain_maps"][3], ves[3].grain_map)


def test_float64_orientations_are_exact(tmp_path, ves):
    p = tmp_path / "ves.h5"
    write_ves(p, ves[:2], orientation_dtype="float64", progress=False)
    with VEDataset(p) as ds:
        np.testing.assert_array_equal(ds[1].quaternions, ves[1].quaternions)


def test_euler_image_matches_damask(ves):
    ve = ves[0]
    img = euler_image(ve)
    assert img.shape == (3,) + ve.grid and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0
    eu = damask.Rotation(ve.quaternions).as_Euler_angles()  # (G, 3) rad, Bunge
    i, j, k = 3, 7, 1
    g = ve.grain_map[i, j, k]
    np.testing.assert_allclose(img[:, i, j, k], eu[g] / EULER_SCALE, atol=1e-6)
    # the normalised angles map back to the same rotation (up to float32 rounding)
    back = damask.Rotation.from_Euler_angles(eulers_norm_of(ve.quaternions) * EULER_SCALE)
    dot = np.abs(np.sum(back.quaternion * ve.quaternions, axis=-1))
    assert np.all(dot > 1 - 1e-6)


def test_read_batch_and_tensor_expansion(tmp_path, ves):
    p = tmp_path / "ves.h5"
    write_ves(p, ves, progress=False)
    with VEDataset(p, threads=2) as ds:
        idx = [4, 0, 2]  # non-contiguous, unsorted
        b = ds.read_batch(idx)
        assert isinstance(b, VEBatch) and len(b) == 3
        assert b.ve_ids == [ves[i].ve_id for i in idx]
        assert b.grain_maps.shape == (3, 12, 12, 12)
        assert np.issubdtype(b.grain_maps.dtype, np.integer)
        assert b.offsets.tolist()[-1] == len(b.eulers_norm) == len(b.quaternions)
        assert b.eulers_norm.dtype == np.float32 and b.quaternions.dtype == np.float32
        x = b.to_tensor()
        assert x.shape == (3, 3, 12, 12, 12) and x.dtype == torch.float32
        for k, i in enumerate(idx):
            # global ids index this VE's rows only
            lo, hi = b.offsets[k], b.offsets[k + 1]
            assert b.grain_maps[k].min() >= lo and b.grain_maps[k].max() < hi
            np.testing.assert_allclose(x[k].numpy(), euler_image(ves[i]), atol=1e-6)
        qi = b.quaternion_image()
        assert qi.shape == (3, 4, 12, 12, 12)
        g = ves[2].grain_map[5, 6, 7]
        np.testing.assert_allclose(qi[2, :, 5, 6, 7].numpy(), ves[2].quaternions[g], atol=2e-7)
        assert b.to_tensor(dtype=torch.float64).dtype == torch.float64
        # contiguous batches take the one-read path; same result
        b2 = ds.read_batch([1, 2, 3])
        np.testing.assert_array_equal(b2.to_tensor()[1].numpy(), x[2].numpy())
        # local VE back from a batch
        np.testing.assert_array_equal(b.volume_element(1).grain_map, ves[0].grain_map)


def test_batch_with_more_grains_than_uint16():
    """Global ids beyond 65535 (large batches of uint16 maps) stay exact."""
    rng = np.random.default_rng(1)
    counts = np.array([30000, 30000, 9000])
    lm = np.stack([rng.integers(0, c, (6, 6, 6)) for c in counts]).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    table = rng.random((offsets[-1], 3)).astype(np.float32)
    b = VEBatch(
        local_maps=lm,
        eulers_norm=table,
        quaternions=np.zeros((offsets[-1], 4), np.float32),
        ve_ids=["a", "b", "c"],
        offsets=offsets,
    )
    glob = lm.astype(np.int64) + offsets[:-1, None, None, None]
    np.testing.assert_array_equal(b.grain_maps, glob)
    assert b.grain_maps.max() > 65535
    np.testing.assert_array_equal(b.to_tensor().numpy(), np.moveaxis(table[glob], -1, 1))


def test_torch_dataset_with_workers(tmp_path, ves):
    p = tmp_path / "ves.h5"
    write_ves(p, ves, progress=False)
    tds = VETorchDataset(p, indices=[5, 1, 3, 0], threads=1)
    assert len(tds) == 4
    s = tds[0]
    assert s["ve_id"] == ves[5].ve_id and s["grain_map"].shape == (12, 12, 12)
    dl = torch.utils.data.DataLoader(tds, batch_size=2, num_workers=2, collate_fn=collate_ves)
    batches = list(dl)
    assert [bid for b in batches for bid in b.ve_ids] == [ves[i].ve_id for i in (5, 1, 3, 0)]
    with VEDataset(p) as ds:
        ref = ds.read_batch([3, 0]).to_tensor()
    assert torch.equal(batches[1].to_tensor(), ref)
    # worker batches hold tensors (shared-memory transfer); same content
    assert isinstance(batches[1].local_maps, torch.Tensor)
    with VEDataset(p) as ds:
        np_batch = ds.read_batch([3, 0])
    np.testing.assert_array_equal(np.asarray(batches[1].grain_maps), np_batch.grain_maps)
    np.testing.assert_array_equal(batches[1].volume_element(1).grain_map, ves[0].grain_map)
    with pytest.raises(IndexError):
        VETorchDataset(p, indices=[6])


def test_hexagonal_and_dtype(tmp_path):
    ve = make_ve(n=8, grains=10, lattice="hP", ve_id="hex")
    p = tmp_path / "hex.h5"
    write_ves(p, [ve], progress=False)
    with VEDataset(p) as ds:
        assert ds.lattice == "hP"
        assert ds._gm.dtype == np.uint16  # 512 voxels > 256
    assert grain_dtype_for(216, 10) == np.uint8
    assert grain_dtype_for(64**3, 2600) == np.uint16
    assert grain_dtype_for(128**3, 40000) == np.uint32


def test_new_file_refuses_existing_and_is_atomic(tmp_path, ves):
    p = tmp_path / "ves.h5"
    write_ves(p, ves[:2], progress=False)
    before = sha(p)
    with pytest.raises(FileExistsError, match="append"):
        write_ves(p, ves[2:4], progress=False)
    assert sha(p) == before

    def broken():
        yield ves[2]
        yield ves[3]
        raise RuntimeError("generator crashed")

    # overwrite that fails half-way keeps the old file, leaves no temp file
    with pytest.raises(RuntimeError, match="crashed"):
        write_ves(p, broken(), overwrite=True, progress=False, block=1)
    assert sha(p) == before
    assert sorted(os.listdir(tmp_path)) == ["ves.h5"]
    # a new file that fails leaves nothing
    q = tmp_path / "new.h5"
    with pytest.raises(RuntimeError):
        write_ves(q, broken(), progress=False, block=1)
    assert not q.exists() and sorted(os.listdir(tmp_path)) == ["ves.h5"]
    # overwrite that succeeds replaces
    assert write_ves(p, ves[4:], overwrite=True, progress=False) == 2
    with VEDataset(p) as ds:
        assert ds.ve_ids == [ves[4].ve_id, ves[5].ve_id]
    with pytest.raises(ValueError, match="no VEs"):
        write_ves(tmp_path / "empty.h5", [], progress=False)


def test_append_and_interrupted_append(tmp_path, ves):
    p = tmp_path / "ves.h5"
    assert write_ves(p, ves[:2], append=True, progress=False) == 2  # creates
    assert write_ves(p, ves[2:3], append=True, progress=False) == 1
    before = sha(p)

    def broken():
        yield ves[3]
        yield ves[4]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_ves(p, broken(), append=True, progress=False, block=1)
    with VEDataset(p) as ds:
        assert len(ds) == 3 and ds.ve_ids == [v.ve_id for v in ves[:3]]

    # a hard kill leaves uncommitted rows behind the committed count: simulate it
    with h5py.File(p, "r+") as f:
        for name in ("grain_maps", "ve_id", "seed", "size"):
            f[name].resize(5, axis=0)
        f["grain_maps"][3] = 7
        f["ve_id"][3] = "garbage"
        f["grain_offsets"].resize(6, axis=0)
        f["grain_offsets"][4:] = 10**6
        f["params_offsets"].resize(6, axis=0)
        f["params_offsets"][4:] = 10**6
    with VEDataset(p) as ds:  # readers ignore them
        assert len(ds) == 3
        np.testing.assert_array_equal(ds[2].grain_map, ves[2].grain_map)
    # the next append truncates them and continues cleanly
    assert write_ves(p, ves[3:], append=True, progress=False) == 3
    with VEDataset(p) as ds:
        assert ds.ve_ids == [v.ve_id for v in ves]
        for i, ve in enumerate(ves):
            np.testing.assert_array_equal(ds[i].grain_map, ve.grain_map)
        np.testing.assert_allclose(ds.read_batch([5]).to_tensor()[0].numpy(), euler_image(ves[5]), atol=1e-6)
    assert before != sha(p)


def test_append_refuses_mismatch_and_duplicates(tmp_path, ves):
    p = tmp_path / "ves.h5"
    write_ves(p, ves[:2], progress=False)
    before = sha(p)
    with pytest.raises(ValueError, match="duplicate VE id"):
        write_ves(p, [ves[1]], append=True, progress=False)
    with pytest.raises(ValueError, match="duplicate VE id"):
        write_ves(p, [ves[3], ves[3]], append=True, progress=False)
    with pytest.raises(ValueError, match="lattice hP differs"):
        write_ves(p, [make_ve(lattice="hP", ve_id="h")], append=True, progress=False)
    with pytest.raises(ValueError, match="grid"):
        write_ves(p, [make_ve(n=8, ve_id="small")], append=True, progress=False)
    with pytest.raises(ValueError, match="choose one"):
        write_ves(p, ves, append=True, overwrite=True, progress=False)
    assert sha(p) == before  # refused appends leave the bytes untouched
    with VEDataset(p) as ds:
        assert ds.ve_ids == [ves[0].ve_id, ves[1].ve_id]
    # grain count beyond the file's index dtype
    q = tmp_path / "u8.h5"
    write_ves(q, [make_ve(n=8, grains=5, ve_id="a")], grain_dtype=np.uint8, progress=False)
    with pytest.raises(ValueError, match="grains do not fit"):
        write_ves(q, [make_ve(n=8, grains=300, ve_id="b")], append=True, progress=False)


def test_bad_input(tmp_path, ves):
    with pytest.raises(FileNotFoundError):
        VEDataset(tmp_path / "missing.h5")
    txt = tmp_path / "notes.h5"
    txt.write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        VEDataset(txt)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="not a matflow-vae3d VE dataset"):
        VEDataset(foreign)
    before = sha(foreign)
    with pytest.raises(ValueError, match="not a matflow-vae3d VE dataset"):
        write_ves(foreign, ves[:1], append=True, progress=False)
    assert sha(foreign) == before
    with pytest.raises(ValueError, match="unknown compression"):
        write_ves(tmp_path / "x.h5", ves, compression="bz2", progress=False)
    q = ves[0].quaternions.copy()
    with pytest.raises(ValueError, match="NaN"):
        VolumeElement(ves[0].grain_map, np.where(q > 0.5, np.nan, q))
    bad = VolumeElement(ves[0].grain_map, q * 2.0, ve_id="bad")
    with pytest.raises(ValueError, match="unit quaternions"):
        write_ves(tmp_path / "bad.h5", [bad], progress=False)
    assert not (tmp_path / "bad.h5").exists()
    with pytest.raises(TypeError):
        write_ves(tmp_path / "bad.h5", [np.zeros((4, 4, 4))], progress=False)


KILLED_WRITER = r"""
import time
import numpy as np
from matflow_vae3d.datasets import write_ves
from matflow_vae3d.microstructure import VolumeElement

def gen():
    rng = np.random.default_rng(0)
    for s in range(100, 140):
        if s == 108:  # two blocks of 4 written: tell the parent, then stall
            print("written", flush=True)
            time.sleep(60)
        q = rng.normal(size=(30, 4))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        yield VolumeElement(rng.integers(0, 30, (12, 12, 12)), q * np.sign(q[:, :1]),
                            "cF", params={{"late": s}}, ve_id=f"late-{{s}}")

write_ves({path!r}, gen(), append=True, progress=False, block=4)
"""


def test_hard_kill_during_append(tmp_path, ves):
    """SIGKILL in the middle of an append: committed VEs stay readable, the next
    append truncates the partial rows and works."""
    import signal
    import subprocess
    import sys

    p = tmp_path / "ves.h5"
    write_ves(p, ves[:3], progress=False)
    code = KILLED_WRITER.format(path=str(p))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with VEDataset(p) as ds:
        assert ds.ve_ids == [v.ve_id for v in ves[:3]]
        np.testing.assert_array_equal(ds[2].grain_map, ves[2].grain_map)
    assert write_ves(p, ves[3:], append=True, progress=False) == 3
    with VEDataset(p) as ds:
        assert ds.ve_ids == [v.ve_id for v in ves]
        assert ds.params(5) == ves[5].params
        np.testing.assert_array_equal(ds[5].grain_map, ves[5].grain_map)
