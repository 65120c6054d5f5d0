"""Material presets and phase validation (matflow_vae3d.cp.materials)."""

import importlib.util
from pathlib import Path

import damask
import numpy as np
import pytest
import yaml

from matflow_vae3d.cp import materials as M
from matflow_vae3d.microstructure.volume_element import VolumeElement

REF = Path(__file__).parent / "data" / "damask_inputs"
_MF = importlib.util.find_spec("matflow")  # located, not imported (importing matflow is slow)
MATFLOW_MG = (
    (Path(_MF.origin).parent if _MF else Path("/nonexistent")) / "data" / "workflows" / "tension_DAMASK_Mg.yaml"
)


def _ref_phase():
    return yaml.safe_load((REF / "mg16_rand_g20_s0.material.yaml").read_text())["phase"]["Mg"]


def test_presets_listed_and_case_insensitive():
    assert {"Mg", "Cu"} <= set(M.list_presets())
    assert M.get_phase("mg") == M.get_phase("MG") == M.get_phase("Mg")
    name, _ = M.load_phase("cu")
    assert name == "Cu"


def test_mg_preset_is_the_phase_damask_ran():
    """The Mg preset equals (apart from references) the phase of the DAMASK 3.0.2 reference run."""
    mg = M.get_phase("Mg")
    assert {k: v for k, v in mg.items() if k != "references"} == _ref_phase()


def test_mg_preset_matches_issue_constants_and_matflow_example():
    mg = M.get_phase("Mg")
    el = mg["mechanical"]["elastic"]
    assert mg["lattice"] == "hP" and mg["c/a"] == pytest.approx(1.6235)
    for k, v in dict(C_11=59.3, C_12=25.7, C_13=21.4, C_33=61.5, C_44=16.4).items():
        assert el[k] == pytest.approx(v * 1e9)
    pl = mg["mechanical"]["plastic"]
    assert pl["N_sl"] == [3, 3, 6, 0, 6] and pl["N_tw"] == [6, 0, 6]
    if not MATFLOW_MG.is_file():
        pytest.skip("MatFlow's tension_DAMASK_Mg.yaml not installed")
    wf = yaml.safe_load(MATFLOW_MG.read_text())
    mf = M.get_phase(wf["tasks"][2]["inputs"]["damask_phases"]["Mg"])  # numbers coerced, scalars per family
    assert mf["mechanical"]["elastic"] == el and mf["c/a"] == mg["c/a"]
    mfp = mf["mechanical"]["plastic"]
    for k, v in pl.items():
        if k not in ("h_sl-sl", "output"):
            assert v == mfp[k], k
    # the issue's remark: MatFlow's h_sl-sl has two unused markers one place off
    diff = [i for i, (a, b) in enumerate(zip(pl["h_sl-sl"], mfp["h_sl-sl"])) if a != b]
    assert diff == [59, 63]


def test_cu_preset_is_cubic_phenopowerlaw():
    cu = M.get_phase("Cu")
    assert cu["lattice"] == "cF"
    assert cu["mechanical"]["plastic"]["type"] == "phenopowerlaw"
    assert cu["mechanical"]["plastic"]["N_sl"] == [12]
    C = M.stiffness_voigt(cu)
    # cubic: bulk modulus eigenvalue C11 + 2 C12, and the two shear eigenvalues
    ev = np.sort(np.linalg.eigvalsh(C))
    el = cu["mechanical"]["elastic"]
    np.testing.assert_allclose(
        ev, np.sort([el["C_11"] + 2 * el["C_12"]] + [el["C_11"] - el["C_12"]] * 2 + [el["C_44"]] * 3), rtol=1e-12
    )


def test_hexagonal_stiffness_is_transversely_isotropic():
    """C rotated about the c axis (z) by any angle is unchanged (hP elasticity)."""
    C = M.stiffness_voigt(M.get_phase("Mg"))
    a = 0.7
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    idx = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    T = np.zeros((3, 3, 3, 3))
    for I, (i, j) in enumerate(idx):
        for J, (k, l) in enumerate(idx):
            for p, q in {(i, j), (j, i)}:
                for r, s in {(k, l), (l, k)}:
                    T[p, q, r, s] = C[I, J]
    Tr = np.einsum("ia,jb,kc,ld,abcd->ijkl", R, R, R, R, T)
    np.testing.assert_allclose(Tr, T, atol=1e-6 * np.abs(T).max())


def test_whole_material_yaml_and_phase_file(tmp_path):
    name, ph = M.load_phase(REF / "mg16_rand_g20_s0.material.yaml")
    assert name == "Mg" and ph == _ref_phase()
    f = tmp_path / "myMg.yaml"
    f.write_text(yaml.safe_dump(_ref_phase()))
    name, ph2 = M.load_phase(f)
    assert name == "myMg" and ph2 == ph
    # scalars are broadcast per family (newer DAMASK layout)
    d = _ref_phase()
    d["mechanical"]["plastic"]["n_sl"] = 20
    assert M.get_phase(d)["mechanical"]["plastic"]["n_sl"] == [20.0] * 5


def test_two_phase_material_yaml_refused(tmp_path):
    cfg = yaml.safe_load((REF / "mg16_rand_g20_s0.material.yaml").read_text())
    cfg["phase"]["Mg2"] = cfg["phase"]["Mg"]
    f = tmp_path / "two.yaml"
    f.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="exactly one phase"):
        M.load_phase(f)


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError, match=r"unknown material 'Titanium'.*Cu, Mg"):
        M.get_phase("Titanium")
    with pytest.raises(FileNotFoundError):
        M.get_phase("no/such/file.yaml")


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: p["mechanical"]["elastic"].pop("C_13"), r"missing key\(s\) \['C_13'\]"),
        (lambda p: p.pop("c/a"), "c/a"),
        (lambda p: p["mechanical"]["plastic"].update({"xi_0_sll": [1]}), "unknown key.*xi_0_sll"),
        (lambda p: p["mechanical"]["plastic"].pop("h_0_sl-sl"), "missing key 'h_0_sl-sl'"),
        (lambda p: p["mechanical"]["plastic"].update({"xi_0_sl": [1e6, 2e6]}), "expected 5 values"),
        (lambda p: p["mechanical"]["plastic"].update({"n_sl": [20, 20, -1, 20, 20]}), "n_sl: must be > 0"),
        (lambda p: p["mechanical"]["elastic"].update({"type": "Neo-Hooke"}), "only 'Hooke'"),
        (lambda p: p["mechanical"]["elastic"].update({"C_44": "soft"}), "expected a number"),
        (lambda p: p.update({"lattice": "tI"}), "lattice 'tI' not supported"),
        (lambda p: p.update({"colour": "grey"}), "unknown key"),
    ],
)
def test_bad_phase_refused_with_named_problem(mutate, match):
    p = _ref_phase()
    mutate(p)
    with pytest.raises(ValueError, match=match):
        M.get_phase(p)


def test_non_positive_definite_elasticity_refused():
    p = _ref_phase()
    # C_12 > C_11 makes C_11 - C_12 (the basal shear C_66) negative
    p["mechanical"]["elastic"]["C_12"] = 70e9
    with pytest.raises(ValueError, match="not positive definite"):
        M.get_phase(p)
    cu = M.get_phase("Cu")
    cu["mechanical"]["elastic"]["C_12"] = -90e9  # C_11 + 2 C_12 < 0: negative bulk modulus
    with pytest.raises(ValueError, match="not positive definite"):
        M.get_phase(cu)


def test_builtin_unsupported_features_named():
    p = M.get_phase("Mg")
    assert M.builtin_unsupported(p) == []
    p["mechanical"]["plastic"] = {"type": "dislotwin"}
    p["thermal"] = {"output": ["T"]}
    p["mechanical"]["elastic"]["C_11,T"] = -1e7
    out = " ".join(M.builtin_unsupported(p))
    assert "dislotwin" in out and "phase.thermal" in out and "C_11,T" in out


def test_lattice_mismatch_refused():
    with pytest.raises(ValueError, match="VE lattice cF differs from the material's lattice hP"):
        M.check_lattice(M.get_phase("Mg"), "fcc")
    M.check_lattice(M.get_phase("Mg"), "hexagonal")


def test_material_config_one_material_per_grain(tmp_path):
    q = damask.Rotation.from_random(5, rng_seed=1).as_quaternion()
    ve = VolumeElement(np.arange(5, dtype=np.int32).reshape(5, 1, 1).repeat(2, 1).repeat(2, 2), q, "hP")
    cm = M.material_config(ve, M.get_phase("Mg"), "Mg")
    assert cm.is_complete and cm.is_valid
    f = tmp_path / "material.yaml"
    cm.save(f)
    back = damask.ConfigMaterial.load(f)
    assert back["homogenization"]["SX"] == {"N_constituents": 1, "mechanical": {"type": "pass"}}
    np.testing.assert_allclose(M.quaternions_of(back), q, atol=1e-15)
    assert all(m["constituents"][0]["v"] == 1.0 and m["homogenization"] == "SX" for m in back["material"])
    with pytest.raises(ValueError, match="lattice"):
        M.material_config(VolumeElement(ve.grain_map, q, "cF"), M.get_phase("Mg"), "Mg")
    with pytest.raises(ValueError, match="no orientation"):
        M.material_config(np.zeros((2, 4)), M.get_phase("Mg"), "Mg")


@pytest.mark.parametrize("name", ["Mg", "Cu"])
def test_presets_are_read_by_the_embedded_solver(name):
    """One source for both solvers: the builtin solver's parser accepts every preset."""
    from matflow_vae3d.cp.phenopowerlaw import from_phase

    phase = M.get_phase(name)
    assert M.builtin_unsupported(phase) == []
    from_phase(phase)
