"""DAMASK_grid driver: input files, running, failure handling, output reading."""

import shutil
from pathlib import Path

import damask
import numpy as np
import pytest
import yaml

from matflow_vae3d.cp import damask_driver as D
from matflow_vae3d.cp.loadcase import LoadCase
from matflow_vae3d.cp.materials import get_phase, quaternions_of

DATA = Path(__file__).parent / "data" / "damask_inputs"
HAVE_DAMASK = shutil.which("DAMASK_grid") is not None


def _ve(n=4, G=3, seed=0):
    rng = np.random.default_rng(seed)
    gm = rng.integers(0, G, (n, n + 1, n + 2)).astype(np.int32)  # non-cubic grid catches axis swaps
    gm.flat[:G] = np.arange(G)
    q = damask.Rotation.from_random(G, rng_seed=seed).as_quaternion()
    return gm, q


# ----------------------------------------------------------------------- executable
def test_find_damask_grid_argument_env_and_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("DAMASK_GRID", "/bin/true")
    assert D.find_damask_grid() == "/bin/true"
    assert D.find_damask_grid("/bin/false") == "/bin/false"  # argument wins
    monkeypatch.setenv("DAMASK_GRID", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="from DAMASK_GRID"):
        D.find_damask_grid()
    monkeypatch.delenv("DAMASK_GRID")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="DAMASK_grid not found.*DAMASK_GRID"):
        D.find_damask_grid()


def test_command_uses_mpirun_only_for_several_processes():
    one = D.damask_command("/opt/DAMASK_grid", 1)
    assert one[0] == "/opt/DAMASK_grid" and "--jobname" in one
    four = D.damask_command("/opt/DAMASK_grid", 4, mpiexec="srun --mpi=pmix")
    assert four[:4] == ["srun", "--mpi=pmix", "-np", "4"] and four[4:] == one


# --------------------------------------------------------------------------- inputs
def test_inputs_round_trip_through_damask_readers(tmp_path):
    gm, q = _ve()
    phase = get_phase("Mg")
    load = LoadCase.uniaxial()
    paths = D.write_inputs(tmp_path, gm, q, phase, load, phase_name="Mg", size=(2e-5, 2.5e-5, 3e-5))
    # geometry: [ix, iy, iz] grain map and size survive the .vti
    g = damask.GeomGrid.load(paths["geom"])
    np.testing.assert_array_equal(g.material, gm)
    np.testing.assert_allclose(g.size, [2e-5, 2.5e-5, 3e-5])
    # material.yaml: one SX/pass material per grain with its orientation, the phase verbatim
    cm = damask.ConfigMaterial.load(paths["material"])
    assert cm.is_complete and cm.is_valid
    assert cm["homogenization"]["SX"] == {"N_constituents": 1, "mechanical": {"type": "pass"}}
    assert get_phase(dict(cm["phase"]["Mg"])) == phase
    np.testing.assert_allclose(quaternions_of(cm), q, atol=1e-15)
    # load.yaml: readable by damask.LoadcaseGrid and by LoadCase.from_damask, same content
    lg = damask.LoadcaseGrid.load(paths["load"])
    assert lg["solver"] == {"mechanical": "spectral_basic"}
    back = LoadCase.from_damask(paths["load"])
    s0, s1 = load.steps[0], back.steps[0]
    np.testing.assert_array_equal(np.isnan(s0.deformation), np.isnan(s1.deformation))
    np.testing.assert_array_equal(np.nan_to_num(s0.deformation), np.nan_to_num(s1.deformation))
    np.testing.assert_array_equal(np.isnan(s0.stress), np.isnan(s1.stress))
    assert (s1.t, s1.N, s1.f_out) == (10.0, 20, 1)
    # the written load.yaml is the reference run's load case
    ref = LoadCase.from_damask(DATA / "mg16_rand_g20_s0.load.yaml")
    assert ref.to_damask() == back.to_damask()


def test_inputs_refuse_bad_grain_map(tmp_path):
    gm, q = _ve()
    with pytest.raises(ValueError, match="orientations are given"):
        D.write_inputs(tmp_path, gm, q[:1], get_phase("Mg"), LoadCase.uniaxial())
    with pytest.raises(ValueError, match="3-D integer"):
        D.write_inputs(tmp_path, gm.astype(float), q, get_phase("Mg"), LoadCase.uniaxial())


# -------------------------------------------------------------------------- failures
@pytest.mark.parametrize("exe, code", [("/bin/false", "exited with code 1"), ("/bin/true", None)])
def test_failed_run_reported_and_job_kept(tmp_path, monkeypatch, exe, code):
    """A non-zero exit is a failure; so is exit 0 without converged increments or results."""
    monkeypatch.setenv("DAMASK_GRID", exe)
    gm, q = _ve()
    load = LoadCase.uniaxial(N=4, strain=0.002)
    job = tmp_path / "job"
    rec = D.simulate_damask(gm, q, get_phase("Mg"), load, job, phase_name="Mg", ve_id="ve-1")
    assert rec.status == "failed" and not rec.converged and rec.solver == "damask"
    if code:
        assert code in rec.reason
    assert "0/4 increments converged" in rec.reason and "no result file" in rec.reason
    assert str(job.resolve()) in rec.reason and "last lines of job.log" in rec.reason
    assert rec.n_converged == 0 and np.isnan(rec.sigma).all() and rec.sigma.shape == (5, 3, 3)
    for f in ("grid.vti", "material.yaml", "load.yaml", "job.log"):
        assert (job / f).is_file()  # job directory kept for inspection


def test_timeout_reported(tmp_path, monkeypatch):
    exe = tmp_path / "slow_grid"
    exe.write_text("#!/bin/sh\nsleep 5\n")
    exe.chmod(0o755)
    gm, q = _ve()
    rec = D.simulate_damask(gm, q, get_phase("Mg"), LoadCase.uniaxial(N=2), tmp_path / "job",
                            executable=str(exe), timeout=0.3)
    assert rec.status == "failed" and "timed out after 0.3 s" in rec.reason


# --------------------------------------------------------------------------- outputs
def test_read_sta_of_reference_runs():
    sta = D.read_sta(DATA / "mg16_rand_g20_s0.sta")
    np.testing.assert_array_equal(sta["increment"], np.arange(1, 21))
    np.testing.assert_allclose(sta["time"], np.arange(1, 21) * 0.5)
    assert sta["converged"].all() and (sta["cutback_level"] == 0).all()
    it = D.iterations_per_increment(sta, 20)
    assert it.sum() == 119  # the README's count for this run
    assert it[0] == 5 and (sta["stag_iterations"] == 2).all()
    assert D.read_sta(DATA / "missing.sta")["increment"].size == 0


def test_volume_averages_recover_cell_cauchy_stress():
    """With P = det(F) sigma F^-T per cell, the average Cauchy stress is the mean of sigma."""
    rng = np.random.default_rng(3)
    n = 50
    F = np.eye(3) + 0.05 * rng.standard_normal((2, n, 3, 3))
    s = rng.standard_normal((2, n, 3, 3)) * 1e8
    s = 0.5 * (s + np.swapaxes(s, -1, -2))
    P = np.linalg.det(F)[..., None, None] * s @ np.linalg.inv(np.swapaxes(F, -1, -2))
    Fa, Pa, Sa = D.volume_averages(F, P)
    np.testing.assert_allclose(Sa, s.mean(axis=1), rtol=1e-10, atol=1e-3)
    np.testing.assert_allclose(Fa, F.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(Pa, P.mean(axis=1), rtol=1e-14)
    # identical to DAMASK's own Cauchy stress followed by a plain mean
    np.testing.assert_allclose(Sa[0], damask.mechanics.stress_Cauchy(P[0], F[0]).mean(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        D.volume_averages(F, P[..., :2])


# ------------------------------------------------------------------ real DAMASK_grid
@pytest.mark.damask
@pytest.mark.skipif(not HAVE_DAMASK, reason="DAMASK_grid not on PATH")
def test_real_damask_run_on_reference_single_crystal(tmp_path):
    """DAMASK_grid on the reference twinning single crystal reproduces the stored averages."""
    ref = np.load(Path(__file__).parent / "data" / "damask_ref" / "mg16_sx_c_par_x.npz") \
        if (Path(__file__).parent / "data" / "damask_ref" / "mg16_sx_c_par_x.npz").is_file() else None
    g = damask.GeomGrid.load(DATA / "mg16_sx_c_par_x.grid.vti")
    cfg = yaml.safe_load((DATA / "mg16_sx_c_par_x.material.yaml").read_text())
    load = LoadCase.from_damask(DATA / "mg16_sx_c_par_x.load.yaml")
    rec = D.simulate_damask(g.material, quaternions_of(cfg), get_phase(cfg), load, tmp_path / "job",
                            phase_name="Mg")
    assert rec.converged, rec.reason
    assert rec.n_converged == 20 and rec.iterations.sum() > 0
    np.testing.assert_allclose(rec.F[:, 0, 0], 1 + 1e-3 * load.times(), rtol=1e-9)
    assert np.abs(rec.P[1:, 1, 1]).max() < 1e-3 * np.abs(rec.P[1:, 0, 0]).max()
    if ref is not None:
        np.testing.assert_allclose(rec.sigma[1:, 0, 0], ref["sigma_avg"][1:, 0, 0], rtol=1e-3)


def test_written_phase_always_outputs_F_and_P(tmp_path):
    """The averages are computed from F and P, so they are added to a phase's output."""
    gm, q = _ve()
    phase = get_phase("Cu")
    phase["mechanical"]["output"] = ["O"]
    paths = D.write_inputs(tmp_path, gm, q, phase, LoadCase.uniaxial(), phase_name="Cu")
    written = damask.ConfigMaterial.load(paths["material"])["phase"]["Cu"]
    assert written["mechanical"]["output"] == ["O", "F", "P"]
    assert phase["mechanical"]["output"] == ["O"]  # the caller's dict is not changed
