"""Material presets and validation of DAMASK phase definitions.

A *phase* is a DAMASK ``material.yaml`` phase entry (a dict with ``lattice``,
``c/a`` for hP, ``mechanical.elastic`` (Hooke) and ``mechanical.plastic``
(phenopowerlaw)). The presets in ``matflow_vae3d/data/materials/*.yaml`` are the
one source for both solvers: the DAMASK driver writes them into ``material.yaml``,
the embedded solver reads the same dict.

Phases are returned normalised to the DAMASK 3.0 layout: per-family parameters
(``n_sl``, ``a_sl``, ``dot_gamma_0_sl``, ``h_0_sl-sl``, ...) as lists with one value
per family, numbers as floats (``N_sl``/``N_tw`` as ints).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from matflow_vae3d.cp.elasticity import REQUIRED as REQUIRED_HOOKE
from matflow_vae3d.cp.elasticity import voigt_stiffness
from matflow_vae3d.crystal import LATTICES, canonical_lattice
from matflow_vae3d.microstructure.io import SX_HOMOGENIZATION, config_material

#: folder holding one ``<Name>.yaml`` phase entry per preset.
PRESET_DIR = Path(__file__).resolve().parent.parent / "data" / "materials"

#: homogenization every material uses: one constituent per material point.
#: the full-field single-crystal homogenization (owned by microstructure.io, which
#: writes and reads the material.yaml layout)
HOMOGENIZATION = SX_HOMOGENIZATION

_PHASE_KEYS = {"lattice", "c/a", "rho", "references", "mechanical", "thermal", "damage"}
_MECH_KEYS = {"output", "elastic", "plastic", "eigen"}
_HOOKE_KEYS = REQUIRED_HOOKE  # independent Hooke constants per lattice
# phenopowerlaw (DAMASK 3.0): parameters given per slip / twin family.
_SL_FAMILY = ("xi_0_sl", "xi_inf_sl", "dot_gamma_0_sl", "n_sl", "a_sl", "h_0_sl-sl")
_SL_FAMILY_OPT = ("c_1", "c_2", "f_sat_sl-tw", "h_int")
_TW_FAMILY = ("xi_0_tw", "dot_gamma_0_tw", "n_tw", "h_0_tw-tw")
_TW_FAMILY_OPT = ("c_3", "c_4")
_PHENO_KEYS = (
    {
        "type",
        "references",
        "output",
        "N_sl",
        "N_tw",
        "h_sl-sl",
        "h_tw-tw",
        "h_sl-tw",
        "h_tw-sl",
        "h_0_tw-sl",
        "a_nonSchmid_110",
        "a_nonSchmid",
        "atol_xi",
        "atol_gamma",
    }
    | set(_SL_FAMILY)
    | set(_SL_FAMILY_OPT)
    | set(_TW_FAMILY)
    | set(_TW_FAMILY_OPT)
)


# ------------------------------------------------------------------------- presets
def list_presets() -> list[str]:
    """Names of the material presets (file stems in :data:`PRESET_DIR`)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _preset_path(name: str) -> Path | None:
    for p in PRESET_DIR.glob("*.yaml"):
        if p.stem.lower() == name.strip().lower():
            return p
    return None


def load_phase(material: str | Path | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Resolve a material to ``(phase_name, phase)``, validated and normalised.

    material : str, Path or dict
        A preset name (case-insensitive, see :func:`list_presets`), a path to a YAML
        file holding either one phase entry or a whole ``material.yaml`` with exactly
        one phase, or such a dict.

    Raises ValueError (unknown preset, missing or unknown keys, bad values,
    non-positive-definite elasticity) or FileNotFoundError.
    """
    name = "phase"
    if isinstance(material, (str, Path)):
        preset = _preset_path(str(material)) if isinstance(material, str) else None
        if preset is not None:
            name, data = preset.stem, yaml.safe_load(preset.read_text())
        else:
            path = Path(material)
            if not path.suffix and not path.exists():
                raise ValueError(
                    f"unknown material {str(material)!r}: use a preset "
                    f"({', '.join(list_presets())}) or a DAMASK phase / material.yaml file"
                )
            if not path.is_file():
                raise FileNotFoundError(f"material file not found: {path}")
            try:
                data = yaml.safe_load(path.read_text())
            except yaml.YAMLError as exc:
                raise ValueError(f"{path}: not valid YAML ({exc})") from exc
            name = path.stem
    elif isinstance(material, Mapping):
        data = material
    else:
        raise ValueError(f"material must be a preset name, a path or a dict, got {type(material).__name__}")
    if not isinstance(data, Mapping):
        raise ValueError(f"material {material!r} is not a YAML mapping")
    if "phase" in data:  # a whole material.yaml
        phases = data["phase"]
        if not isinstance(phases, Mapping) or len(phases) != 1:
            names = list(phases) if isinstance(phases, Mapping) else phases
            raise ValueError(f"material configuration must hold exactly one phase, found {names}")
        name, data = next(iter(phases.items()))
    return str(name), validate_phase(data)


def get_phase(material: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The validated, normalised DAMASK phase dict of ``material`` (see :func:`load_phase`)."""
    return load_phase(material)[1]


def phase_yaml(phase: Mapping[str, Any]) -> str:
    """The phase as YAML text (as stored in results files)."""
    return yaml.safe_dump(_plain(phase), sort_keys=False, default_flow_style=None)


# ------------------------------------------------------------------------ validation
def _plain(x):
    """Copy of x with numpy scalars/arrays turned into plain Python objects."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _number(value, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, numbers.Real):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    else:
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if not np.isfinite(v):
        raise ValueError(f"{where}: value {value!r} is not finite")
    return v


def _numbers(value, where: str) -> list[float]:
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise ValueError(f"{where}: expected a list of numbers, got {value!r}")
    return [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _counts(value, where: str) -> list[int]:
    vals = _numbers(value, where)
    if any(v < 0 or v != int(v) for v in vals):
        raise ValueError(f"{where}: expected non-negative integers, got {value!r}")
    return [int(v) for v in vals]


def _per_family(pl: dict, key: str, n: int, where: str, required: bool = True) -> None:
    """Normalise pl[key] to a list of n floats (a scalar is broadcast to every family)."""
    if key not in pl:
        if required:
            raise ValueError(f"{where}: missing key {key!r} (one value per family)")
        return
    v = pl[key]
    if isinstance(v, (list, tuple, np.ndarray)):
        vals = _numbers(v, f"{where}.{key}")
        if len(vals) != n:
            raise ValueError(f"{where}.{key}: expected {n} values (one per family), got {len(vals)}")
    else:
        vals = [_number(v, f"{where}.{key}")] * n
    pl[key] = vals


def validate_phase(phase: Mapping[str, Any]) -> dict[str, Any]:
    """Check a DAMASK phase entry and return a normalised deep copy.

    Checks: known keys only; ``lattice`` one of cF, cI, hP (``c/a`` > 0 for hP);
    Hooke elasticity with the constants the lattice needs and a positive-definite
    6x6 stiffness; phenopowerlaw parameters present with one value per family and
    in DAMASK's ranges. Raises ValueError naming the problem.
    """
    if not isinstance(phase, Mapping):
        raise ValueError(f"a phase must be a mapping, got {type(phase).__name__}")
    ph = copy.deepcopy(_plain(phase))
    unknown = set(ph) - _PHASE_KEYS
    if unknown:
        raise ValueError(f"phase: unknown key(s) {sorted(unknown)}")
    if "lattice" not in ph:
        raise ValueError("phase: missing key 'lattice'")
    if ph["lattice"] not in LATTICES:
        raise ValueError(f"phase: lattice {ph['lattice']!r} not supported (use one of {LATTICES})")
    lattice = ph["lattice"]
    if lattice == "hP":
        if "c/a" not in ph:
            raise ValueError("phase: missing key 'c/a' (required for lattice hP)")
        ph["c/a"] = _number(ph["c/a"], "phase.c/a")
        if ph["c/a"] <= 0:
            raise ValueError(f"phase.c/a must be > 0, got {ph['c/a']}")
    if "mechanical" not in ph or not isinstance(ph["mechanical"], Mapping):
        raise ValueError("phase: missing key 'mechanical'")
    mech = ph["mechanical"]
    unknown = set(mech) - _MECH_KEYS
    if unknown:
        raise ValueError(f"phase.mechanical: unknown key(s) {sorted(unknown)}")

    # elasticity
    el = mech.get("elastic")
    if not isinstance(el, dict):
        raise ValueError("phase.mechanical: missing key 'elastic'")
    if el.get("type") != "Hooke":
        raise ValueError(f"phase.mechanical.elastic.type {el.get('type')!r} not supported (only 'Hooke')")
    needed = _HOOKE_KEYS[lattice]
    missing = [k for k in needed if k not in el]
    if missing:
        raise ValueError(f"phase.mechanical.elastic: missing key(s) {missing} for lattice {lattice}")
    for k in list(el):
        if k in ("type", "references"):
            continue
        base = k.split(",")[0]
        if k == "T_ref" or (base in needed and (k == base or k[len(base) :] in (",T", ",T^2", ",T^3"))):
            el[k] = _number(el[k], f"phase.mechanical.elastic.{k}")
        else:
            raise ValueError(
                f"phase.mechanical.elastic: unknown key {k!r} for lattice {lattice} (expected {list(needed)})"
            )
    C = stiffness_voigt(ph)
    eig = np.linalg.eigvalsh(C)
    if eig.min() <= 0:
        raise ValueError(
            "phase.mechanical.elastic: stiffness is not positive definite "
            f"(smallest eigenvalue of the 6x6 Voigt matrix {eig.min():.4g} Pa)"
        )

    # plasticity
    pl = mech.get("plastic")
    if pl is not None:
        if not isinstance(pl, dict) or "type" not in pl:
            raise ValueError("phase.mechanical.plastic: missing key 'type'")
        if pl["type"] == "phenopowerlaw":
            _validate_phenopowerlaw(pl)
        elif pl["type"] != "none":
            # other DAMASK laws pass through untouched; solvers decide what they support
            pass
    return ph


def _validate_phenopowerlaw(pl: dict) -> None:
    where = "phase.mechanical.plastic"
    unknown = set(pl) - _PHENO_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} for phenopowerlaw")
    N_sl = _counts(pl.get("N_sl", []), f"{where}.N_sl")
    N_tw = _counts(pl.get("N_tw", []), f"{where}.N_tw")
    if sum(N_sl) + sum(N_tw) == 0:
        raise ValueError(f"{where}: no slip or twin systems (N_sl and N_tw empty or zero)")
    if "N_sl" in pl:
        pl["N_sl"] = N_sl
    if "N_tw" in pl:
        pl["N_tw"] = N_tw
    positive = []
    if sum(N_sl) > 0:
        for k in _SL_FAMILY:
            _per_family(pl, k, len(N_sl), where)
        for k in _SL_FAMILY_OPT:
            _per_family(pl, k, len(N_sl), where, required=False)
        if "h_sl-sl" not in pl:
            raise ValueError(f"{where}: missing key 'h_sl-sl'")
        pl["h_sl-sl"] = _numbers(pl["h_sl-sl"], f"{where}.h_sl-sl")
        positive += [(k, N_sl) for k in ("xi_0_sl", "xi_inf_sl", "dot_gamma_0_sl", "n_sl", "a_sl")]
    if sum(N_tw) > 0:
        for k in _TW_FAMILY:
            _per_family(pl, k, len(N_tw), where)
        for k in _TW_FAMILY_OPT:
            _per_family(pl, k, len(N_tw), where, required=False)
        if "h_tw-tw" not in pl:
            raise ValueError(f"{where}: missing key 'h_tw-tw'")
        pl["h_tw-tw"] = _numbers(pl["h_tw-tw"], f"{where}.h_tw-tw")
        positive += [(k, N_tw) for k in ("xi_0_tw", "dot_gamma_0_tw", "n_tw")]
    if sum(N_sl) > 0 and sum(N_tw) > 0:
        _per_family(pl, "h_0_tw-sl", len(N_tw), where)
        for k in ("h_sl-tw", "h_tw-sl"):
            if k not in pl:
                raise ValueError(f"{where}: missing key {k!r} (slip and twin both active)")
            pl[k] = _numbers(pl[k], f"{where}.{k}")
    for k, N in positive:  # DAMASK's sanity checks, on families that have systems
        bad = [i for i, (v, n) in enumerate(zip(pl[k], N)) if n > 0 and v <= 0]
        if bad:
            raise ValueError(f"{where}.{k}: must be > 0 for every used family, not at families {bad}")


def stiffness_voigt(phase: Mapping[str, Any]) -> np.ndarray:
    """(6, 6) Pa: Voigt stiffness of a Hooke phase in the crystal frame.

    Order 11, 22, 33, 23, 13, 12 (engineering shear). Cubic (cF, cI): C_11, C_12,
    C_44; hexagonal (hP): C_11, C_12, C_13, C_33, C_44 and C_66 = (C_11 - C_12)/2.
    """
    el = phase["mechanical"]["elastic"]
    lattice = phase["lattice"]
    c = {k: _number(el[k], f"elastic.{k}") for k in _HOOKE_KEYS[lattice]}
    return voigt_stiffness(c, lattice)


def check_lattice(phase: Mapping[str, Any], lattice: str, what: str = "VE") -> None:
    """Raise ValueError when ``lattice`` (of a VE) differs from the phase's lattice."""
    lat = canonical_lattice(lattice)
    if lat != phase["lattice"]:
        raise ValueError(
            f"{what} lattice {lat} differs from the material's lattice {phase['lattice']}: "
            "orientations are reduced to a different fundamental zone; use a material "
            f"with lattice {lat} or VEs generated for {phase['lattice']}"
        )


def check_builtin_supported(phase: Mapping[str, Any], what: str = "") -> None:
    """Refuse (ValueError naming each feature) a valid phase the embedded solver does
    not model; ``what`` prefixes the message (e.g. the material file)."""
    unsupported = builtin_unsupported(phase)
    if unsupported:
        raise ValueError(f"{what}{': ' if what else ''}builtin solver does not support: " + ", ".join(unsupported))


def check_material_for(material, lattice: str | None = None, solver: str = "builtin") -> tuple[str, dict[str, Any]]:
    """Everything that can be said about a campaign's material before anything runs
    (ValueError / FileNotFoundError, one line each): it loads (a preset or a DAMASK phase
    / material.yaml file), it has plasticity parameters, the embedded solver models it
    (``solver='builtin'``), and its lattice is the VEs' (``lattice``). Returns
    (phase name, phase)."""
    name, phase = load_phase(material)
    pl = phase["mechanical"].get("plastic")
    if pl is None or pl.get("type") == "none":
        raise ValueError(
            f"material {material}: phase {name!r} has no plasticity parameters (mechanical: plastic): "
            "crystal plasticity needs them"
        )
    if solver == "builtin":
        check_builtin_supported(phase, f"material {material}")
    if lattice:
        lat = canonical_lattice(lattice)
        if lat != phase["lattice"]:
            raise ValueError(
                f"material {material} is {phase['lattice']} but the campaign's VEs are {lat} (crystal_structure): "
                f"give --var crystal_structure {phase['lattice']} or a {lat} material"
            )
    return name, phase


def builtin_unsupported(phase: Mapping[str, Any]) -> list[str]:
    """Features of a (valid) phase the embedded solver does not model, by name.

    Empty when the phase is Hooke elasticity (constant, no temperature terms) with
    phenopowerlaw plasticity, and nothing else (no thermal, damage, eigen).
    """
    out = []
    for k in ("thermal", "damage"):
        if k in phase:
            out.append(f"phase.{k}")
    mech = phase["mechanical"]
    if "eigen" in mech:
        out.append("phase.mechanical.eigen")
    el = mech["elastic"]
    out += [f"phase.mechanical.elastic.{k} (temperature dependence)" for k in el if k == "T_ref" or "," in k]
    pl = mech.get("plastic")
    if pl is None or pl.get("type") == "none":
        out.append("a phase without plasticity (mechanical.plastic phenopowerlaw is required)")
    elif pl.get("type") != "phenopowerlaw":
        out.append(f"plasticity type {pl.get('type')!r} (only phenopowerlaw)")
    if pl is not None and pl.get("type") == "phenopowerlaw":
        for k in ("a_nonSchmid_110", "a_nonSchmid"):
            if k in pl:
                out.append(f"phase.mechanical.plastic.{k} (non-Schmid terms)")
        if "h_int" in pl:
            out.append("phase.mechanical.plastic.h_int")
    return out


# ------------------------------------------------------------------- material.yaml
def check_quaternions(quaternions, what: str = "VE") -> np.ndarray:
    """(G, 4) float64 unit quaternions, renormalised; ValueError for none, NaN or
    rows whose norm is off by more than 1e-5."""
    q = np.asarray(quaternions, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 4:
        raise ValueError(f"{what}: quaternions must have shape (n_grains, 4), got {q.shape}")
    if len(q) == 0:
        raise ValueError(f"{what}: has no orientations")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"{what}: orientations contain NaN or inf")
    norm = np.linalg.norm(q, axis=1)
    if np.any(norm == 0):
        raise ValueError(
            f"{what}: has no orientation for grains {np.flatnonzero(norm == 0)[:5].tolist()} (zero quaternions)"
        )
    if np.any(np.abs(norm - 1.0) > 1e-5):
        bad = np.flatnonzero(np.abs(norm - 1.0) > 1e-5)
        raise ValueError(f"{what}: orientations {bad[:5].tolist()} are not unit quaternions")
    return q / norm[:, None]  # exact unit length (datasets store float32)


def material_config(ve_or_quaternions, phase: Mapping[str, Any], phase_name: str = "phase"):
    """``damask.ConfigMaterial`` with one material per grain.

    ve_or_quaternions : VolumeElement or (G, 4) quaternions (w, x, y, z), DAMASK
        convention; material g gets orientation g.
    The quaternions and the phase's lattice are checked here; the layout
    (homogenization ``SX`` of type pass, one constituent of ``phase_name`` with
    v = 1 per material) is :func:`matflow_vae3d.microstructure.io.config_material`'s.
    """
    q = getattr(ve_or_quaternions, "quaternions", ve_or_quaternions)
    q = check_quaternions(q)
    if hasattr(ve_or_quaternions, "lattice"):
        check_lattice(phase, ve_or_quaternions.lattice)
    return config_material(q, _plain(phase), phase_name)


def quaternions_of(config: Mapping[str, Any]) -> np.ndarray:
    """(n_materials, 4): the orientation ``O`` of each material entry of a material.yaml dict."""
    return np.array([m["constituents"][0]["O"] for m in config["material"]], dtype=np.float64)


__all__ = [
    "PRESET_DIR",
    "HOMOGENIZATION",
    "list_presets",
    "load_phase",
    "get_phase",
    "phase_yaml",
    "validate_phase",
    "stiffness_voigt",
    "check_lattice",
    "builtin_unsupported",
    "check_builtin_supported",
    "check_quaternions",
    "material_config",
    "quaternions_of",
]
