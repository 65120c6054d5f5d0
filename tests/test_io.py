"""VE import/export round trips: DAMASK (.vti + material.yaml), DREAM.3D, MatFlow dicts."""

from __future__ import annotations

import hashlib

import damask
import h5py
import numpy as np
import pytest
import yaml
from scipy.spatial import cKDTree

from matflow_vae3d.crystal import disorientation_angle
from matflow_vae3d.datasets import euler_image
from matflow_vae3d.microstructure import VolumeElement, io


def make_ve(n=10, grains=14, seed=0, lattice="cF"):
    """Periodic Voronoi VE (anisotropic grid) with FZ-reduced random orientations."""
    rng = np.random.default_rng(seed)
    shape = np.array([n, n + 2, n - 1])
    pts = rng.random((grains, 3)) * shape
    x = np.stack(np.meshgrid(*[np.arange(k) + 0.5 for k in shape], indexing="ij"), -1).reshape(-1, 3)
    _, gm = cKDTree(pts, boxsize=shape).query(x)
    q = damask.Orientation.from_random(shape=grains, lattice=lattice, rng_seed=seed).reduced.quaternion
    return VolumeElement(gm.reshape(tuple(shape)), q, lattice, size=shape * 2e-6, ve_id=f"v{seed}")


def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


def same_ve(a, b, lattice, atol_rad=1e-6, relabelled=False):
    """Same grain map (up to a relabelling if ``relabelled``) and symmetrically
    equivalent orientations."""
    assert a.lattice == b.lattice == lattice
    if relabelled:  # the grain maps are the same partition of the voxels
        pairs = np.unique(np.stack([a.grain_map.ravel(), b.grain_map.ravel()]), axis=1)
        assert pairs.shape[1] == a.n_grains == b.n_grains
        qa, qb = a.quaternions[pairs[0]], b.quaternions[pairs[1]]
    else:
        np.testing.assert_array_equal(a.grain_map, b.grain_map)
        qa, qb = a.quaternions, b.quaternions
    assert np.all(disorientation_angle(qa, qb, lattice) < atol_rad)
    # the VAE input is identical (both FZ-reduced)
    np.testing.assert_allclose(euler_image(a), euler_image(b), atol=1e-5)


@pytest.mark.parametrize("lattice", ["cF", "hP"])
def test_damask_round_trip(tmp_path, lattice):
    ve = make_ve(lattice=lattice)
    g = io.to_geomgrid(ve)
    np.testing.assert_array_equal(g.material, ve.grain_map)
    np.testing.assert_allclose(g.size, ve.size)
    vti, mat = io.save_damask(ve, tmp_path)
    assert vti.name == "geom.vti" and mat.name == "material.yaml"
    back = io.load_damask(vti, mat)
    same_ve(back, ve, lattice)
    np.testing.assert_allclose(back.quaternions, ve.quaternions, atol=1e-12)
    np.testing.assert_allclose(back.size, ve.size)
    cfg = yaml.safe_load(mat.read_text())
    assert len(cfg["material"]) == ve.n_grains
    assert cfg["homogenization"]["SX"]["mechanical"]["type"] == "pass"
    ((label, phase),) = cfg["phase"].items()
    assert phase["lattice"] == lattice
    assert all(
        m["homogenization"] == "SX" and len(m["constituents"]) == 1 and m["constituents"][0]["phase"] == label
        for m in cfg["material"]
    )
    # damask reads both files: material ids index the material list
    assert damask.ConfigMaterial.load(mat).is_complete
    # existing files are refused and left intact
    before = sha(mat)
    with pytest.raises(FileExistsError):
        io.save_damask(ve, tmp_path)
    assert sha(mat) == before


def test_damask_phase_and_bad_input(tmp_path):
    ve = make_ve()
    phase = {
        "lattice": "cF",
        "mechanical": {"output": ["F"], "elastic": {"type": "Hooke", "C_11": 1.0e11, "C_12": 0.5e11, "C_44": 0.3e11}},
    }
    vti, mat = io.save_damask(ve, tmp_path, phase, phase_label="Cu", name="cu")
    assert vti.name == "cu.vti"
    cfg = yaml.safe_load(mat.read_text())
    assert cfg["phase"]["Cu"]["mechanical"]["elastic"]["C_11"] == 1.0e11
    with pytest.raises(ValueError, match="does not match"):
        io.save_damask(ve, tmp_path / "x", {"lattice": "hP"})
    with pytest.raises(FileNotFoundError):
        io.load_damask(tmp_path / "none.vti", mat)
    # two constituents per material are not a single-crystal VE
    cfg["material"][0]["constituents"].append(dict(cfg["material"][0]["constituents"][0]))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="constituents"):
        io.load_damask(vti, bad)
    # no lattice recorded -> required
    cfg = yaml.safe_load(mat.read_text())
    del cfg["phase"]["Cu"]["lattice"]
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="pass lattice"):
        io.load_damask(vti, bad)
    assert io.load_damask(vti, bad, lattice="fcc").lattice == "cF"


def test_damask_job_files_have_one_layout_both_directions(tmp_path):
    """A VE exported for DAMASK is a job the embedded solver reads, and a CP job the
    DAMASK_grid driver writes is a VE the importer reads: one material.yaml layout."""
    from matflow_vae3d.cp.damask_driver import write_inputs
    from matflow_vae3d.cp.loadcase import LoadCase
    from matflow_vae3d.cp.materials import get_phase
    from matflow_vae3d.cp.simulate import read_damask_inputs

    ve = make_ve(lattice="hP")
    vti, mat = io.save_damask(ve, tmp_path / "export", get_phase("Mg"), phase_label="Mg")
    paths = write_inputs(
        tmp_path / "job",
        ve.grain_map,
        ve.quaternions,
        get_phase("Mg"),
        LoadCase.uniaxial(),
        phase_name="Mg",
        size=ve.size,
    )
    job = read_damask_inputs(vti, mat, paths["load"])
    np.testing.assert_array_equal(job["grain_map"], ve.grain_map)
    np.testing.assert_allclose(job["quaternions"], ve.quaternions, atol=1e-12)
    assert job["phase_name"] == "Mg" and np.allclose(job["size"], ve.size)
    same_ve(io.load_damask(paths["geom"], paths["material"]), ve, "hP")
    mf = io.read_material_yaml(paths["material"])
    assert mf.phase_of == ["Mg"] * len(ve.quaternions) and set(mf.homogenization_of) == {"SX"}
    mf.check_full_field()
    # the layout rules are the importer's too: a volume fraction other than 1 is refused by name
    cfg = yaml.safe_load(mat.read_text())
    cfg["material"][2]["constituents"][0]["v"] = 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="material 2: volume fraction v=0.5"):
        io.load_damask(vti, bad)


def test_damask_import_reduces_to_fz(tmp_path):
    """Orientations outside the fundamental zone come back FZ-reduced and equivalent."""
    ve = make_ve(lattice="cF")
    ops = damask.Orientation(lattice="cF").symmetry_operations  # (24, 4) quaternions
    rot = damask.Rotation(ops[5]) * damask.Rotation(ve.quaternions)
    outside = VolumeElement(ve.grain_map, rot.quaternion, "cF", size=ve.size)
    vti, mat = io.save_damask(outside, tmp_path)
    back = io.load_damask(vti, mat)
    same_ve(back, ve, "cF")


@pytest.mark.parametrize("lattice", ["cF", "hP"])
def test_dream3d_round_trip_and_damask_readers(tmp_path, lattice):
    ve = make_ve(lattice=lattice, seed=3)
    p = io.save_dream3d(ve, tmp_path / "ve.dream3d")
    back = io.load_dream3d(p)  # grain-wise (FeatureIds + Grain Data)
    same_ve(back, ve, lattice, atol_rad=1e-5)  # float32 Euler angles in the file
    np.testing.assert_allclose(back.size, ve.size, rtol=1e-6)
    cellwise = io.load_dream3d(p, feature_ids=None)  # cells grouped by orientation
    same_ve(cellwise, ve, lattice, atol_rad=1e-5, relabelled=True)
    # damask's own readers agree (material m = grain m-1, DREAM.3D ids are 1-based)
    g = damask.GeomGrid.load_DREAM3D(p, feature_IDs="FeatureIds")
    np.testing.assert_array_equal(g.material, ve.grain_map + 1)
    cfg = damask.ConfigMaterial.load_DREAM3D(p, grain_data="Grain Data")
    O = np.array([m["constituents"][0]["O"] for m in cfg["material"][1:]])
    assert np.all(disorientation_angle(O, ve.quaternions, lattice) < 1e-5)
    # existing file refused
    with pytest.raises(FileExistsError):
        io.save_dream3d(ve, p)


def test_dream3d_lattice_and_foreign_files(tmp_path):
    ve = make_ve(lattice="cI")
    p = io.save_dream3d(ve, tmp_path / "ve.dream3d")
    assert io.load_dream3d(p).lattice == "cI"  # our attribute
    with h5py.File(p, "r+") as f:  # as written by DREAM.3D: Laue class only
        del f["DataContainers/SyntheticVolumeDataContainer/CellEnsembleData"].attrs["matflow_vae3d_lattice"]
        del f["DataContainers/SyntheticVolumeDataContainer/Grain Data"]
    assert io.load_dream3d(p).lattice == "cF"  # cubic -> cF by default
    assert io.load_dream3d(p, lattice="bcc").lattice == "cI"
    with pytest.raises(ValueError, match="cubic"):
        io.load_dream3d(p, lattice="hP")
    same_ve(io.load_dream3d(p, lattice="cI"), ve, "cI", atol_rad=1e-5)  # per-cell Eulers
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a DREAM.3D file"):
        io.load_dream3d(foreign)
    txt = tmp_path / "a.dream3d"
    txt.write_text("hello")
    with pytest.raises(ValueError, match="not an HDF5"):
        io.load_dream3d(txt)


MATFLOW_KEYS = {
    "size",
    "grid_size",
    "origin",
    "orientations",
    "element_material_idx",
    "constituent_material_idx",
    "constituent_material_fraction",
    "constituent_phase_label",
    "constituent_orientation_idx",
    "material_homog",
}


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".npz"])
def test_matflow_round_trip(tmp_path, suffix):
    ve = make_ve(lattice="hP", seed=2)
    d = io.to_matflow_volume_element(ve, phase_label="Mg")
    assert set(d) == MATFLOW_KEYS
    assert tuple(d["grid_size"]) == d["element_material_idx"].shape == ve.grid
    assert d["orientations"]["P"] == -1
    assert d["orientations"]["quat_component_ordering"] == "scalar-vector"
    assert d["orientations"]["unit_cell_alignment"] == {"x": "a", "y": "b*", "z": "c"}
    assert set(d["constituent_phase_label"]) == {"Mg"} and set(d["material_homog"]) == {"SX"}
    assert len(d["constituent_material_idx"]) == ve.n_grains
    f = io.save_matflow_volume_element(d, tmp_path / f"ve{suffix}")
    d2 = io.load_matflow_volume_element(f)
    back = io.from_matflow_volume_element(d2, lattice="hP")
    same_ve(back, ve, "hP")
    np.testing.assert_allclose(back.size, ve.size)
    back2 = io.from_matflow_volume_element(d2, phases={"Mg": {"lattice": "hP"}})
    assert back2.lattice == "hP"


def test_matflow_conventions_and_bad_input():
    ve = make_ve(lattice="cF", seed=4)
    d = io.to_matflow_volume_element(ve)
    # P = +1, vector-scalar order: the same rotations
    q = ve.quaternions * np.array([1, -1, -1, -1])
    d_p1 = dict(
        d,
        orientations=dict(
            d["orientations"], P=1, quaternions=np.roll(q, -1, axis=1), quat_component_ordering="vector-scalar"
        ),
    )
    same_ve(io.from_matflow_volume_element(d_p1, lattice="cF"), ve, "cF")
    # Euler angles in degrees
    eul = np.degrees(damask.Rotation(ve.quaternions).as_Euler_angles())
    d_eu = dict(
        d, orientations={"type": "euler", "euler_angles": eul, "euler_degrees": True, "unit_cell_alignment": {"x": "a"}}
    )
    same_ve(io.from_matflow_volume_element(d_eu, lattice="cF"), ve, "cF")
    # a full-field dict with a shuffled orientation table and unused orientations
    perm = np.random.default_rng(0).permutation(ve.n_grains + 3) % ve.n_grains
    d_perm = dict(
        d,
        orientations=dict(d["orientations"], quaternions=ve.quaternions[perm]),
        constituent_orientation_idx=np.array([int(np.flatnonzero(perm == g)[0]) for g in range(ve.n_grains)]),
    )
    same_ve(io.from_matflow_volume_element(d_perm, lattice="cF"), ve, "cF")
    eul_nan = eul.copy()
    eul_nan[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        io.from_matflow_volume_element(
            dict(d_eu, orientations=dict(d_eu["orientations"], euler_angles=eul_nan)), lattice="cF"
        )
    with pytest.raises(ValueError, match="crystal structure"):
        io.from_matflow_volume_element(d)
    with pytest.raises(ValueError, match="single-phase"):
        io.from_matflow_volume_element(
            dict(d, constituent_phase_label=np.array(["Al"] * (ve.n_grains - 1) + ["Cu"])), lattice="cF"
        )
    with pytest.raises(ValueError, match="grid_size"):
        io.from_matflow_volume_element(dict(d, grid_size=np.array([3, 3, 3])), lattice="cF")
    bad = d["orientations"]["quaternions"].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        io.from_matflow_volume_element(dict(d, orientations=dict(d["orientations"], quaternions=bad)), lattice="cF")
    with pytest.raises(ValueError, match="shape"):
        io.from_matflow_volume_element(
            dict(d, orientations=dict(d["orientations"], quaternions=bad[:, :3])), lattice="cF"
        )
    with pytest.raises(ValueError, match="missing the key"):
        io.from_matflow_volume_element({"orientations": d["orientations"]}, lattice="cF")
    with pytest.raises(ValueError, match="unknown MatFlow"):
        io.save_matflow_volume_element(d, "ve.txt")
