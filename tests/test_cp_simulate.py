"""simulate_ve / simulate_dataset / simulate_damask_inputs, the CP results file and
`vae3d simulate`, on tiny VEs (4^3, 2-3 grains) and a short load (3 increments)."""

import hashlib
from pathlib import Path

import damask
import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from matflow_vae3d.cli import cli
from matflow_vae3d.cp import simulate as S
from matflow_vae3d.cp.loadcase import LoadCase
from matflow_vae3d.cp.materials import get_phase, phase_yaml
from matflow_vae3d.cp.results import ResultsWriter, read_results
from matflow_vae3d.microstructure.volume_element import VolumeElement

DATA = Path(__file__).parent / "data" / "damask_inputs"
LOAD = LoadCase.uniaxial(N=3, strain=0.0015)  # 3 increments at 1e-3 /s, t = 1.5 s


def _ve(i, lattice="hP", G=2, n=4):
    gm = np.zeros((n, n, n), np.int32)
    gm[n // 2 :] = 1
    if G == 3:
        gm[:, n // 2 :, :] = 2
    q = damask.Orientation.from_random(shape=G, lattice=lattice, rng_seed=100 + i).reduced.quaternion
    return VolumeElement(gm, q, lattice, ve_id=f"ve-{i}")


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _stiff_mg():
    """Mg with 100x the slip/twin resistances: stays elastic over LOAD, so the solver
    converges in 1-2 iterations per increment (plumbing tests within the time budget;
    the full Mg law runs in test_damask_inputs_cli_on_reference_job)."""
    ph = get_phase("Mg")
    pl = ph["mechanical"]["plastic"]
    for k in ("xi_0_sl", "xi_inf_sl", "xi_0_tw"):
        pl[k] = [100 * v for v in pl[k]]
    return ph


@pytest.fixture(scope="module")
def stiff_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("mat") / "Mg_stiff.yaml"
    p.write_text(yaml.safe_dump(_stiff_mg()))
    return p


@pytest.fixture(scope="module")
def single(stiff_file):
    """One VE simulated on its own (shared by the tests below to keep the budget)."""
    return S.simulate_ve(_ve(0), stiff_file, LOAD)


@pytest.fixture(scope="module")
def load_yaml(tmp_path_factory):
    p = tmp_path_factory.mktemp("load") / "short.yaml"
    damask.LoadcaseGrid(LOAD.to_damask()).save(p)
    return p


# ---------------------------------------------------------------------------- one VE
def test_simulate_ve_record(single):
    r = single
    assert r.status == "converged" and r.converged and r.reason == "" and r.solver == "builtin"
    assert r.n_converged == 3 and r.sigma.shape == r.F.shape == r.P.shape == (4, 3, 3)
    np.testing.assert_allclose(r.t, [0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(r.F[:, 0, 0], 1 + 1e-3 * r.t, rtol=1e-10)  # prescribed dot_F_xx
    assert np.abs(r.P[1:, 1, 1]).max() < 1e-3 * r.P[-1, 0, 0]  # lateral P = 0
    assert r.sigma_xx_MPa[0] == 0
    # elastic regime: sigma_xx proportional to the strain, up to the finite-strain terms
    # (Cauchy stress on the deformed area: + O(strain) = 0.2 % at 0.15 %)
    np.testing.assert_allclose(r.sigma_xx_MPa[1:] / (r.F[1:, 0, 0] - 1), r.sigma_xx_MPa[1] / 5e-4, rtol=5e-3)
    assert r.wall_s > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(material="Titanium"), "refused: unknown material 'Titanium'"),
        (dict(material="Cu"), "refused: VE 've-0' lattice hP differs from the material's lattice cF"),
        (
            dict(
                material={
                    **get_phase("Mg"),
                    "mechanical": {
                        **get_phase("Mg")["mechanical"],
                        "elastic": {"type": "Hooke", "C_11": 1e9, "C_12": 5e9, "C_13": 1e9, "C_33": 1e9, "C_44": 1e9},
                    },
                }
            ),
            "not positive definite",
        ),
        (
            dict(solver="builtin", material={**get_phase("Mg"), "thermal": {}}),
            "builtin solver does not support: phase.thermal",
        ),
    ],
)
def test_bad_input_is_a_failure_record(kwargs, match):
    r = S.simulate_ve(_ve(0), load=LOAD, **kwargs)
    assert r.status == "failed" and not r.converged
    assert match in r.reason
    assert np.isnan(r.sigma).all() and r.n_converged == 0 and r.ve_id == "ve-0"


def test_ve_without_orientations_is_a_failure_record():
    ve = _ve(0)
    ve.quaternions[1] = 0.0
    r = S.simulate_ve(ve, "Mg", LOAD)
    assert r.status == "failed" and "no orientation for grains [1]" in r.reason


def test_divergence_is_a_failure_record_with_solver_reason():
    r = S.simulate_ve(_ve(0), _stiff_mg(), LOAD, max_iter=1, max_cutback=0, tol_div=1e-16, tol_div_abs=1e-12)
    assert r.status == "failed" and "increment 1" in r.reason
    assert r.n_converged == 0 and np.isnan(r.sigma[1:]).all()


# ---------------------------------------------------------------------- results file
def test_results_file_append_commit_and_interrupted_row(tmp_path, single):
    out = tmp_path / "r.h5"
    kw = dict(
        t=LOAD.times(),
        material=phase_yaml(get_phase("Mg")),
        loadcase=S.loadcase_yaml(LOAD),
        solver="builtin",
        lattice="hP",
    )
    fail = S.SimulationRecord.failed("refused: test", LOAD, ve_id="bad")
    with ResultsWriter(out, **kw) as w:
        w.append(single)
        w.append(fail)
    # a crash half-way through a third append: datasets grown, count not committed
    with h5py.File(out, "r+") as f:
        for name in ("ve_id", "sigma"):
            f[name].resize(3, axis=0)
        f["ve_id"][2] = "half-written"
    r = read_results(out)
    assert list(r["ve_id"]) == ["ve-0", "bad"] and list(r["status"]) == ["converged", "failed"]
    np.testing.assert_array_equal(r["sigma"][0], single.sigma)
    assert r["reason"][1] == "refused: test" and np.isnan(r["sigma"][1]).all()
    assert r["material"] == kw["material"] and r["solver"] == "builtin" and r["lattice"] == "hP"
    with ResultsWriter(out, **kw) as w:  # resume: the half-written row is replaced
        assert w.done_ids() == {"ve-0", "bad"}
        w.append(S.SimulationRecord.failed("x", LOAD, ve_id="third"))
    assert list(read_results(out)["ve_id"]) == ["ve-0", "bad", "third"]
    # a file written for another material or load is never appended to or changed
    sha = _sha(out)
    with pytest.raises(ValueError, match="different material"):
        ResultsWriter(out, **{**kw, "material": phase_yaml(get_phase("Cu"))})
    with pytest.raises(ValueError, match="different loadcase"):
        ResultsWriter(out, **{**kw, "loadcase": S.loadcase_yaml(LoadCase.uniaxial())})
    assert _sha(out) == sha
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a CP results file"):
        read_results(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("my notes")
    with pytest.raises(ValueError, match="not an HDF5 file; refusing to overwrite"):
        ResultsWriter(text, **kw)
    assert text.read_text() == "my notes"


def test_read_results_fields_and_malformed_files(tmp_path):
    """read_results(fields=...) reads only the named row datasets; a file missing a
    dataset or n_committed, or with a dataset shorter than n_committed, is refused with
    the file and the dataset named."""
    out = tmp_path / "r.h5"
    kw = dict(
        t=LOAD.times(),
        material=phase_yaml(get_phase("Mg")),
        loadcase=S.loadcase_yaml(LOAD),
        solver="builtin",
        lattice="hP",
    )
    with ResultsWriter(out, **kw) as w:
        w.append(S.SimulationRecord.failed("first", LOAD, ve_id="a", wall_s=2.0))
        w.append(S.SimulationRecord.failed("second", LOAD, ve_id="b"))
    full = read_results(out)
    assert list(full["wall_s"]) == [2.0, 0.0] and full["P"].shape == (2, len(LOAD.times()), 3, 3)
    part = read_results(out, fields=("ve_id", "sigma"))
    assert set(part) == {
        "t",
        "ve_id",
        "sigma",
        "material",
        "loadcase",
        "solver",
        "lattice",
        "coarsen",
        "coarsen_rule",
        "phase_name",
    }
    assert list(part["ve_id"]) == ["a", "b"]
    np.testing.assert_array_equal(part["sigma"], full["sigma"])
    with pytest.raises(ValueError, match="unknown CP results field"):
        read_results(out, fields=("stress",))
    with h5py.File(out, "r+") as f:
        f["reason"].resize(1, axis=0)
    with pytest.raises(ValueError, match=r"r\.h5: dataset 'reason' has shape \(1,\), expected at least n_committed=2"):
        read_results(out)
    with h5py.File(out, "r+") as f:
        del f["reason"]
    with pytest.raises(ValueError, match=r"r\.h5: CP results file lacks dataset 'reason'"):
        read_results(out)
    with h5py.File(out, "r+") as f:
        del f.attrs["n_committed"]
    with pytest.raises(ValueError, match="lacks the root attribute 'n_committed'"):
        read_results(out)


# --------------------------------------------------------------------------- dataset
def test_dataset_cli_resume_and_batch_equals_single(tmp_path, single, load_yaml, stiff_file):
    """`vae3d simulate --data`: a batch of 2 (one VE invalid -> failure row), then a resumed
    run adds only the missing VE; a VE solved in a batch equals it solved alone."""
    from matflow_vae3d.datasets import write_ves

    data = tmp_path / "ves.h5"
    write_ves(data, [_ve(0), _ve(1, G=3), _ve(2)], progress=False)
    out = tmp_path / "stress.h5"
    run = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--data",
            str(data),
            "--material",
            str(stiff_file),
            "--out",
            str(out),
            "--load",
            str(load_yaml),
            "--batch-size",
            "2",
            "--limit",
            "2",
            "--no-progress",
        ],
    )
    assert run.exit_code == 0, run.output
    assert "converged 2, failed 0, skipped 0" in run.output
    r = read_results(out)
    assert list(r["ve_id"]) == ["ve-0", "ve-1"] and (r["n_converged"] == 3).all()
    # batched and alone agree to the solver tolerance (1e-6 of the stress)
    np.testing.assert_allclose(r["sigma"][0], single.sigma, rtol=0, atol=1e-5 * np.abs(single.sigma).max())
    np.testing.assert_allclose(r["t"], LOAD.times())
    # resume: only ve-2 is simulated; the first two rows are untouched
    summary = S.simulate_dataset(data, out, stiff_file, load=load_yaml, progress=False)
    assert (summary["n_skipped"], summary["n_run"], summary["n_converged"]) == (2, 1, 1)
    r2 = read_results(out)
    assert list(r2["ve_id"]) == ["ve-0", "ve-1", "ve-2"]
    np.testing.assert_array_equal(r2["sigma"][:2], r["sigma"])
    # the same VEs with the DAMASK solver failing (DAMASK_GRID=/bin/false): rows, not a crash
    out_d = tmp_path / "damask.h5"
    run = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--data",
            str(data),
            "--solver",
            "damask",
            "--out",
            str(out_d),
            "--load",
            str(load_yaml),
            "--keep-jobs",
            str(tmp_path / "jobs"),
            "--no-progress",
        ],
        env={"DAMASK_GRID": "/bin/false"},
    )
    assert run.exit_code == 0, run.output
    assert "converged 0, failed 3" in run.output and "exited with code 1" in run.output
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["ve-0", "ve-1", "ve-2"]
    assert set(read_results(out_d)["status"]) == {"failed"}


def test_dataset_workers_write_what_one_process_writes(tmp_path, stiff_file):
    """workers=2 (spawned solver processes, one chunk of one VE each) writes the same
    rows, in dataset order, with the same stresses as one process."""
    from matflow_vae3d.datasets import write_ves

    data = tmp_path / "ves.h5"
    write_ves(data, [_ve(0), _ve(1, G=3), _ve(2)], progress=False)
    one = S.simulate_dataset(data, tmp_path / "one.h5", stiff_file, load=LOAD, batch_size=1, progress=False)
    two = S.simulate_dataset(data, tmp_path / "two.h5", stiff_file, load=LOAD, batch_size=1, progress=False, workers=2)
    assert one["n_converged"] == two["n_converged"] == 3
    a, b = read_results(tmp_path / "one.h5"), read_results(tmp_path / "two.h5")
    assert list(b["ve_id"]) == ["ve-0", "ve-1", "ve-2"] == list(a["ve_id"])
    np.testing.assert_array_equal(a["sigma"], b["sigma"])
    with pytest.raises(ValueError, match="workers and worker_threads must be >= 1"):
        S.simulate_dataset(data, tmp_path / "x.h5", stiff_file, load=LOAD, workers=0)


def test_dataset_refusals_write_nothing(tmp_path):
    from matflow_vae3d.datasets import write_ves

    data = tmp_path / "ves.h5"
    write_ves(data, [_ve(0, lattice="cF")], progress=False)
    out = tmp_path / "out.h5"
    with pytest.raises(ValueError, match="dataset lattice cF differs"):
        S.simulate_dataset(data, out, "Mg", load=LOAD, progress=False)
    with pytest.raises(ValueError, match="unknown material"):
        S.simulate_dataset(data, out, "Unobtainium", load=LOAD, progress=False)
    with pytest.raises(FileNotFoundError, match="DAMASK_grid"):
        S.simulate_dataset(
            data, out, "Cu", solver="damask", damask_executable=str(tmp_path / "nope"), load=LOAD, progress=False
        )
    assert not out.exists()
    run = CliRunner().invoke(cli, ["simulate", "--data", str(data), "--material", "Ti", "--out", str(out)])
    assert run.exit_code != 0 and "unknown material 'Ti'" in run.output and "Cu, Mg" in run.output
    run = CliRunner().invoke(cli, ["simulate", "--out", str(out)])
    assert run.exit_code != 0 and "exactly one of --data and --damask-inputs" in run.output


# --------------------------------------------------------------------- DAMASK inputs
def test_read_reference_damask_inputs():
    job = S.read_damask_inputs(
        DATA / "mg16_rand_g20_s0.grid.vti", DATA / "mg16_rand_g20_s0.material.yaml", DATA / "mg16_rand_g20_s0.load.yaml"
    )
    np.testing.assert_array_equal(job["grain_map"], damask.GeomGrid.load(DATA / "mg16_rand_g20_s0.grid.vti").material)
    cfg = yaml.safe_load((DATA / "mg16_rand_g20_s0.material.yaml").read_text())
    np.testing.assert_allclose(job["quaternions"][3], cfg["material"][3]["constituents"][0]["O"], atol=1e-15)
    assert job["phase_name"] == "Mg"
    assert job["phase"] == {k: v for k, v in get_phase("Mg").items() if k != "references"}
    assert job["load"].to_damask() == LoadCase.uniaxial().to_damask()


def _edit(tmp_path, fn):
    cfg = yaml.safe_load((DATA / "mg16_rand_g20_s0.material.yaml").read_text())
    fn(cfg)
    p = tmp_path / "material.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda c: c["phase"].update(Mg2=c["phase"]["Mg"]), r"several phases \(Mg, Mg2\)"),
        (lambda c: c["homogenization"]["SX"]["mechanical"].update(type="isostrain"), "mechanical type 'isostrain'"),
        (lambda c: c["homogenization"]["SX"].update(thermal={"type": "pass"}), r"\['thermal'\] not supported"),
        (lambda c: c["phase"]["Mg"]["mechanical"]["plastic"].update(type="dislotwin"), "plasticity type 'dislotwin'"),
        (lambda c: c["phase"]["Mg"]["mechanical"].update(eigen=[{"type": "thermalexpansion"}]), "mechanical.eigen"),
        (lambda c: c["material"][0]["constituents"][0].update(V_e=np.eye(3).tolist()), r"constituent keys \['V_e'\]"),
        (lambda c: c["material"][0]["constituents"].append(c["material"][1]["constituents"][0]), "2 constituents"),
    ],
)
def test_unsupported_damask_inputs_refused_by_name(tmp_path, fn, match):
    with pytest.raises(ValueError, match=match):
        S.read_damask_inputs(
            DATA / "mg16_rand_g20_s0.grid.vti", _edit(tmp_path, fn), DATA / "mg16_rand_g20_s0.load.yaml"
        )


def test_damask_inputs_cli_on_reference_job(tmp_path, load_yaml):
    """The reference twinning single-crystal DAMASK job (its material.yaml with the full Mg
    law, its geometry coarsened to 4^3, a 3-increment load) on the embedded solver via
    `vae3d simulate --damask-inputs`."""
    name = "mg16_sx_c_par_x"
    g = damask.GeomGrid.load(DATA / f"{name}.grid.vti")
    small = tmp_path / "coarse.vti"
    damask.GeomGrid(g.material[::4, ::4, ::4], g.size).save(small)
    out = tmp_path / "result.h5"
    args = [
        "simulate",
        "--damask-inputs",
        str(small),
        str(DATA / f"{name}.material.yaml"),
        str(load_yaml),
        "--solver",
        "builtin",
        "--out",
        str(out),
    ]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    assert "coarse: converged, 3/3 increments" in run.output
    r = read_results(out)
    assert list(r["ve_id"]) == ["coarse"] and r["sigma"].shape == (1, 4, 3, 3)
    assert r["F"].shape == r["P"].shape == (1, 4, 3, 3) and r["t"].shape == (4,)
    np.testing.assert_allclose(r["F"][0, :, 0, 0], 1 + 1e-3 * r["t"], rtol=1e-10)
    assert 0 < r["sigma"][0, -1, 0, 0] < 200e6 and r["solver"] == "builtin"
    # same job again into the same file: refused, file unchanged
    sha = _sha(out)
    run = CliRunner().invoke(cli, args)
    assert run.exit_code != 0 and "already holds a result for 'coarse'" in run.output
    assert _sha(out) == sha


def test_damask_inputs_with_failing_damask_records_the_failure(tmp_path):
    name = "mg16_rand_g20_s0"
    out = tmp_path / "result.h5"
    run = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--damask-inputs",
            str(DATA / f"{name}.grid.vti"),
            str(DATA / f"{name}.material.yaml"),
            str(DATA / f"{name}.load.yaml"),
            "--solver",
            "damask",
            "--keep-jobs",
            str(tmp_path / "job"),
            "--out",
            str(out),
        ],
        env={"DAMASK_GRID": "/bin/false"},
    )
    assert run.exit_code != 0 and "simulation failed: DAMASK_grid exited with code 1" in run.output
    r = read_results(out)
    assert list(r["status"]) == ["failed"] and r["solver"] == "damask"
    # the user's inputs were copied verbatim into the kept job directory
    for src, dst in (("grid.vti", "grid.vti"), ("material.yaml", "material.yaml"), ("load.yaml", "load.yaml")):
        assert _sha(tmp_path / "job" / dst) == _sha(DATA / f"{name}.{src}")


def test_builtin_batches_are_capped_by_cells(monkeypatch):
    """The builtin solver gets at most MAX_BATCH_VOXELS cells per call: ten 16³ VEs go
    as 8 + 2, three 32³ VEs one at a time (memory grows with the batch)."""
    from types import SimpleNamespace

    from matflow_vae3d.cp import simulate as S

    calls = []

    def fake(ves, phase, load, **kw):
        calls.append((len(ves), ves[0].grain_map.shape[0]))
        return [SimpleNamespace(tag=f"rec-{id(v)}") for v in ves]

    monkeypatch.setattr(S, "_solve_builtin", fake)
    ves = [SimpleNamespace(grain_map=np.zeros((16,) * 3)) for _ in range(10)]
    ves += [SimpleNamespace(grain_map=np.zeros((32,) * 3)) for _ in range(3)]
    opts = {"solver": "builtin", "phase": {}, "load": None, "device": "cpu", "dtype": None, "progress": False}
    recs = S._solve_chunk(list(enumerate(ves)), {**opts, "numerics": {}})
    assert calls == [(8, 16), (2, 16), (1, 32), (1, 32), (1, 32)]
    assert sorted(recs) == list(range(13)) and recs[12].tag == f"rec-{id(ves[12])}"
    assert recs[12].grid_run == (32, 32, 32) and recs[0].grid_run == (16, 16, 16)  # the grid solved


@pytest.mark.parametrize("workers", [1, 2])
def test_dataset_progress_moves_within_a_batch(tmp_path, stiff_file, monkeypatch, workers):
    """The VE bar is credited after every CP increment of the VEs in flight (one process,
    and through a queue from spawned workers), not only when a batch ends."""
    import contextlib

    from matflow_vae3d.datasets import write_ves

    seen = []
    orig = S._Tally.progress

    @contextlib.contextmanager
    def spy(self, *a, **k):
        with orig(self, *a, **k) as done:
            inner = done.partial

            def record(key, rows):
                seen.append(rows)
                inner(key, rows)

            done.partial = record
            yield done

    monkeypatch.setattr(S._Tally, "progress", spy)
    data = tmp_path / "ves.h5"
    write_ves(data, [_ve(0), _ve(1), _ve(2)], progress=False)
    batch = 3 if workers == 1 else 1
    out = S.simulate_dataset(data, tmp_path / "o.h5", stiff_file, load=LOAD, batch_size=batch, workers=workers)
    assert out["n_converged"] == 3
    inflight = [v for v in seen if v > 0]
    if workers == 1:  # one batch of 3 VEs, 3 increments: 1, 2, 3 VEs' worth, then committed
        assert seen == [1.0, 2.0, 3.0, 0.0]
    else:  # each worker's chunk of one VE reports 1/3, 2/3, 1
        assert any(abs(v - 1 / 3) < 1e-9 for v in inflight) and any(abs(v - 2 / 3) < 1e-9 for v in inflight)


def test_dataset_progress_log_lines_for_batch_jobs(tmp_path, stiff_file, monkeypatch, capsys):
    """progress='log' (MatFlow's CP tasks without a terminal): progress lines with the VEs
    done, in-flight increments counted, and an ETA, no bar."""
    from matflow_vae3d.datasets import write_ves

    monkeypatch.setattr(S, "LOG_EVERY_S", 0.0)
    data = tmp_path / "ves.h5"
    write_ves(data, [_ve(0), _ve(1)], progress=False)
    S.simulate_dataset(data, tmp_path / "o.h5", stiff_file, load=LOAD, batch_size=2, progress="log")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("simulate (builtin): ")]
    assert "0.7/2 VEs (33 %)" in lines[0] and "ETA" in lines[0]  # after 1 of 3 increments
    assert lines[-1].startswith("simulate (builtin): 2.0/2 VEs (100 %)") and "0 failed" in lines[-1]
