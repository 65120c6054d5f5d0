"""Import/export of volume elements: DAMASK grid geometry (.vti) + material.yaml,
DREAM.3D files, and MatFlow's ``volume_element`` parameter dict.

All importers return a :class:`VolumeElement` with 0-based contiguous grain indices
and orientations reduced to the fundamental zone of its lattice (so a VE read from
any source has the normalised-Euler convention the VAE expects). Orientation
conventions: unit quaternions (w, x, y, z), passive (sample -> crystal), P = -1
(DAMASK's); Bunge Euler angles in radians.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..crystal import canonical_lattice
from ..fileio import atomic_output
from .volume_element import VolumeElement

# ---------------------------------------------------------------------------- helpers

#: minimal elastic phases used when no phase is given (room-temperature constants, Pa).
MINIMAL_PHASES: dict[str, tuple[str, dict]] = {
    "cF": (
        "Al",
        {
            "lattice": "cF",
            "mechanical": {
                "output": ["F", "P"],
                "elastic": {"type": "Hooke", "C_11": 106.9e9, "C_12": 60.52e9, "C_44": 28.26e9},
            },
        },
    ),
    "cI": (
        "Fe",
        {
            "lattice": "cI",
            "mechanical": {
                "output": ["F", "P"],
                "elastic": {"type": "Hooke", "C_11": 231.4e9, "C_12": 134.7e9, "C_44": 116.4e9},
            },
        },
    ),
    "hP": (
        "Mg",
        {
            "lattice": "hP",
            "c/a": 1.6235,
            "mechanical": {
                "output": ["F", "P"],
                "elastic": {
                    "type": "Hooke",
                    "C_11": 59.4e9,
                    "C_12": 25.61e9,
                    "C_13": 21.44e9,
                    "C_33": 61.6e9,
                    "C_44": 16.4e9,
                },
            },
        },
    ),
}

#: homogenization for full-field (one constituent per material) DAMASK grid runs.
SX_HOMOGENIZATION = {"SX": {"N_constituents": 1, "mechanical": {"type": "pass"}}}


def _fz(q: np.ndarray, lattice: str) -> np.ndarray:
    from ..crystal import reduce_to_fz

    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 4:
        raise ValueError(f"quaternions must have shape (n, 4), got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("orientations contain NaN or inf")
    n = np.linalg.norm(q, axis=1, keepdims=True)
    if np.any(n < 1e-8):
        raise ValueError("orientations contain zero-length quaternions")
    return reduce_to_fz(q / n, lattice) if len(q) else q.reshape(0, 4)


def _eulers_to_quats(eulers, degrees: bool = False) -> np.ndarray:
    from ..crystal import eulers_to_quaternions

    e = np.asarray(eulers, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] != 3:
        raise ValueError(f"Euler angles must have shape (n, 3), got {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("Euler angles contain NaN or inf")
    return eulers_to_quaternions(np.radians(e) if degrees else e)


def _compact(material: np.ndarray, quats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel the used material ids to 0..n-1 (first-use order kept by value)."""
    used, inv = np.unique(material, return_inverse=True)
    if used.min() < 0 or used.max() >= len(quats):
        raise ValueError(
            f"material indices span [{used.min()}, {used.max()}] but only {len(quats)} orientations are defined"
        )
    return inv.reshape(material.shape).astype(np.int32), quats[used]


def _atomic(path: Path, overwrite: bool):
    """:func:`~matflow_vae3d.fileio.atomic_output` keeping the suffix (damask and numpy
    writers pick or append it)."""
    return atomic_output(path, overwrite, "pass overwrite=True / --overwrite", keep_suffix=True)


# ---------------------------------------------------------------------------- DAMASK
# The one owner of a DAMASK grid job's geometry (.vti) and material.yaml layout, both
# directions: one single-constituent material per grain (material g = grain g, its
# orientation as ``O``, v = 1) in homogenization ``SX`` of type pass. The embedded
# solver's job reader and the DAMASK_grid driver (``cp``) call these; ``cp.loadcase``
# owns load.yaml and ``cp.materials`` the phase schema.


def geom_grid(grain_map: np.ndarray, size, comments: Sequence[str] = ()):
    """:class:`damask.GeomGrid` of a grain map.

    grain_map : (nx, ny, nz) int, 0-based material (grain) index per cell;
    size : (3,) m, the VE's edge lengths.
    """
    import damask

    gm = np.asarray(grain_map)
    if gm.ndim != 3 or not np.issubdtype(gm.dtype, np.integer):
        raise ValueError(f"grain_map must be a 3-D integer array, got {gm.dtype} {gm.shape}")
    return damask.GeomGrid(
        material=gm.astype(np.int64), size=np.asarray(size, dtype=np.float64), comments=list(comments)
    )


def to_geomgrid(ve: VolumeElement):
    """The VE's geometry as a :class:`damask.GeomGrid` (material = grain index)."""
    return geom_grid(ve.grain_map, ve.size, [f"matflow-vae3d VE {ve.ve_id or ''}".strip(), f"lattice {ve.lattice}"])


def config_material(quaternions: np.ndarray, phase: Mapping[str, Any], phase_label: str):
    """:class:`damask.ConfigMaterial`: material g = one constituent of ``phase_label``
    with orientation ``quaternions[g]`` ((G, 4), w x y z, DAMASK convention) and
    v = 1, in homogenization ``SX`` (:data:`SX_HOMOGENIZATION`). The phase is written
    as given (callers validate it)."""
    import damask

    q = np.asarray(quaternions, dtype=np.float64)
    cfg = damask.ConfigMaterial(
        {"homogenization": copy.deepcopy(SX_HOMOGENIZATION), "phase": {phase_label: _to_plain(dict(phase))}}
    )
    return cfg.material_add(O=q, phase=phase_label, homogenization="SX", v=np.ones(len(q)))


def to_config_material(ve: VolumeElement, phase: dict | None = None, phase_label: str | None = None):
    """:func:`config_material` of a VE; ``phase`` is a DAMASK phase definition (dict)
    or None for a minimal elastic phase of the VE's lattice (Al, Fe or Mg constants)."""
    default_label, default_phase = MINIMAL_PHASES[ve.lattice]
    if phase is None:
        phase = default_phase
    if not isinstance(phase, dict):
        raise ValueError(f"phase must be a DAMASK phase definition (dict), got {type(phase).__name__}")
    if "lattice" in phase and canonical_lattice(phase["lattice"]) != ve.lattice:
        raise ValueError(f"phase lattice {phase['lattice']!r} does not match the VE's {ve.lattice!r}")
    return config_material(ve.quaternions, phase, phase_label or default_label)


@dataclasses.dataclass(frozen=True)
class MaterialFile:
    """A material.yaml read by :func:`read_material_yaml`.

    quaternions : (n_materials, 4) float64, each material's ``O`` as written;
    phase_of, homogenization_of : per material, the labels it uses;
    phases, homogenizations : the definitions (label -> dict) the file holds.
    """

    path: str
    quaternions: np.ndarray
    phase_of: list[str]
    homogenization_of: list[str]
    phases: dict[str, Any]
    homogenizations: dict[str, Any]

    def used_phases(self) -> dict[str, Any]:
        """The phase definitions some material uses (label -> dict), in first-use order."""
        return {lab: self.phases[lab] for lab in dict.fromkeys(self.phase_of)}

    def check_full_field(self) -> None:
        """ValueError unless every used homogenization is the full-field single-crystal
        one: mechanical type ``pass``, one constituent, no other keys."""
        for h in dict.fromkeys(self.homogenization_of):
            hom = self.homogenizations[h] or {}
            extra = set(hom) - {"N_constituents", "mechanical"}
            if extra:
                raise ValueError(
                    f"{self.path}: homogenization {h!r}: {sorted(extra)} not supported (only mechanical type pass)"
                )
            mech = hom.get("mechanical") or {}
            if mech.get("type") != "pass" or set(mech) - {"type", "output"}:
                raise ValueError(
                    f"{self.path}: homogenization {h!r}: mechanical type {mech.get('type')!r} not "
                    "supported (only 'pass', one constituent per material point)"
                )
            if int(hom.get("N_constituents", 1)) != 1:
                raise ValueError(
                    f"{self.path}: homogenization {h!r}: N_constituents {hom.get('N_constituents')} "
                    "not supported (only 1)"
                )


def read_material_yaml(path) -> MaterialFile:
    """Read a material.yaml of single-crystal materials, refusing by name what is not:
    a material with other than one constituent, a constituent without ``O``, with
    v != 1, with keys other than phase/O/v, or naming an undefined phase or
    homogenization; top-level keys other than homogenization/phase/material."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        cfg = yaml.safe_load(path.read_text())
    except Exception as exc:
        raise ValueError(f"{path}: not a YAML file ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    extra = set(cfg) - {"homogenization", "phase", "material"}
    if extra:
        raise ValueError(f"{path}: unsupported top-level keys {sorted(extra)}")
    mats = cfg.get("material") or []
    if not mats:
        raise ValueError(f"{path} defines no materials")
    phases, homs = dict(cfg.get("phase") or {}), dict(cfg.get("homogenization") or {})
    quats, phase_of, hom_of = [], [], []
    for k, m in enumerate(mats):
        cons = (m or {}).get("constituents") or []
        if len(cons) != 1:
            raise ValueError(
                f"{path}: material {k} has {len(cons)} constituents; "
                "only single-crystal materials (one constituent) are supported"
            )
        c = cons[0]
        extra = set(c) - {"phase", "O", "v"}
        if extra:
            raise ValueError(f"{path}: material {k}: constituent keys {sorted(extra)} not supported")
        if c.get("phase") not in phases:
            raise ValueError(f"{path}: material {k} refers to undefined phase {c.get('phase')!r}")
        if m.get("homogenization") not in homs:
            raise ValueError(f"{path}: material {k}: homogenization {m.get('homogenization')!r} is not defined")
        if "O" not in c:
            raise ValueError(f"{path}: material {k} has no orientation 'O'")
        if abs(float(c.get("v", 1.0)) - 1.0) > 1e-12:
            raise ValueError(f"{path}: material {k}: volume fraction v={c['v']} (must be 1)")
        quats.append([float(x) for x in c["O"]])
        phase_of.append(str(c["phase"]))
        hom_of.append(str(m["homogenization"]))
    return MaterialFile(str(path), np.asarray(quats, dtype=np.float64), phase_of, hom_of, phases, homs)


def save_damask(
    ve: VolumeElement,
    directory,
    phase: dict | None = None,
    *,
    phase_label: str | None = None,
    name: str = "geom",
    material_name: str = "material.yaml",
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``directory/<name>.vti`` (damask GeomGrid) and ``directory/material.yaml``.

    One material per grain (material i = grain i, its orientation as ``O``),
    homogenization ``SX`` of type pass, and ``phase`` (a DAMASK phase dict) or a
    minimal elastic one for the VE's lattice. Existing files are refused unless
    ``overwrite``; each file is written to a temporary name and renamed.
    Returns (vti_path, material_yaml_path).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vti = directory / (name if name.endswith(".vti") else f"{name}.vti")
    mat = directory / material_name
    cfg = to_config_material(ve, phase, phase_label)
    with _atomic(vti, overwrite) as tmp_v, _atomic(mat, overwrite) as tmp_m:  # both files or neither
        to_geomgrid(ve).save(tmp_v)
        cfg.save(tmp_m)
    return vti, mat


def load_damask(vti, material_yaml, lattice: str | None = None) -> VolumeElement:
    """VE from a DAMASK grid geometry (.vti) and its material.yaml.

    The material.yaml is read by :func:`read_material_yaml` (single-constituent
    materials; the constituent's ``O`` is the grain orientation). The lattice comes
    from the used phase definitions (``lattice`` key) or, when those have none, must
    be given.
    """
    import damask

    vti = Path(vti)
    if not vti.exists():
        raise FileNotFoundError(f"{vti} does not exist")
    mf = read_material_yaml(material_yaml)
    grid = damask.GeomGrid.load(vti)
    found = {canonical_lattice(ph["lattice"]) for ph in mf.used_phases().values() if "lattice" in (ph or {})}
    if len(found) > 1:
        raise ValueError(f"{material_yaml}: phases of different lattices {sorted(found)}; a VE is single-phase")
    if found:
        lat = found.pop()
        if lattice is not None and canonical_lattice(lattice) != lat:
            raise ValueError(f"lattice {lattice!r} given but {material_yaml} says {lat!r}")
    elif lattice is None:
        raise ValueError(f"{material_yaml} has no phase lattice: pass lattice ('cF', 'cI' or 'hP')")
    else:
        lat = canonical_lattice(lattice)
    gm, q = _compact(np.asarray(grid.material), mf.quaternions)
    return VolumeElement(
        gm, _fz(q, lat), lat, size=np.asarray(grid.size, float), params={"source": str(vti)}, ve_id=vti.stem
    )


# ---------------------------------------------------------------------------- DREAM.3D
#: DREAM.3D crystal structure (Laue class) ids.
_D3D_HEX, _D3D_CUBIC, _D3D_UNKNOWN = 0, 1, 999


def save_dream3d(ve: VolumeElement, path, *, phase_name: str | None = None, overwrite: bool = False) -> Path:
    """Write a minimal DREAM.3D (file version 7.0) file of the VE.

    ``DataContainers/SyntheticVolumeDataContainer`` with ``_SIMPL_GEOMETRY``
    (DIMENSIONS, SPACING, ORIGIN), ``CellData`` (FeatureIds 1-based, Phases,
    EulerAngles per cell, float32 rad), ``Grain Data`` (EulerAngles, Phases per
    feature, row 0 unused as in DREAM.3D) and ``CellEnsembleData`` (CrystalStructures,
    PhaseTypes, PhaseName). ``damask.GeomGrid.load_DREAM3D`` and
    ``damask.ConfigMaterial.load_DREAM3D`` read it (cell- or grain-wise).
    """
    import h5py

    from ..crystal import quaternions_to_eulers

    path = Path(path)
    nx, ny, nz = ve.grid
    eul = quaternions_to_eulers(ve.quaternions).astype(np.float32)  # (G, 3)
    fid = ve.grain_map.transpose(2, 1, 0) + 1  # (nz, ny, nx), 1-based
    name = phase_name or MINIMAL_PHASES[ve.lattice][0]
    with _atomic(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["FileVersion"] = np.bytes_("7.0")
            f.attrs["DREAM3D Version"] = np.bytes_("6.5.171 (written by matflow-vae3d)")
            b = f.create_group("DataContainers/SyntheticVolumeDataContainer")
            g = b.create_group("_SIMPL_GEOMETRY")
            g.attrs["GeometryType"] = np.uint32(0)  # ImageGeometry
            g.attrs["GeometryTypeName"] = np.bytes_("ImageGeometry")
            g["DIMENSIONS"] = np.array([nx, ny, nz], dtype=np.int64)
            g["SPACING"] = (ve.size / np.array(ve.grid)).astype(np.float32)
            g["ORIGIN"] = np.zeros(3, dtype=np.float32)
            c = b.create_group("CellData")
            c["FeatureIds"] = fid[..., None].astype(np.int32)
            c["Phases"] = np.ones((nz, ny, nx, 1), dtype=np.int32)
            c["EulerAngles"] = eul[ve.grain_map.transpose(2, 1, 0)]
            gd = b.create_group("Grain Data")
            gd["EulerAngles"] = np.vstack([np.zeros((1, 3), np.float32), eul])
            gd["Phases"] = np.vstack([np.zeros((1, 1), np.int32), np.ones((ve.n_grains, 1), np.int32)])
            e = b.create_group("CellEnsembleData")
            xtal = _D3D_HEX if ve.lattice == "hP" else _D3D_CUBIC
            e["CrystalStructures"] = np.array([[_D3D_UNKNOWN], [xtal]], dtype=np.uint32)
            e["PhaseTypes"] = np.array([[_D3D_UNKNOWN], [0]], dtype=np.uint32)
            e["PhaseName"] = np.array([b"Invalid Phase", name.encode()])
            e.attrs["matflow_vae3d_lattice"] = ve.lattice
            # DREAM.3D attribute-matrix metadata: Cell (3), CellFeature (7), CellEnsemble (11)
            for grp, kind, tdims in ((c, 3, [nx, ny, nz]), (gd, 7, [ve.n_grains + 1]), (e, 11, [2])):
                grp.attrs["AttributeMatrixType"] = np.uint32(kind)
                grp.attrs["TupleDimensions"] = np.array(tdims, dtype=np.uint64)
    return path


def load_dream3d(
    path, lattice: str | None = None, *, feature_ids: str | None = "auto", grain_data: str | None = "auto"
) -> VolumeElement:
    """VE from a DREAM.3D file (versions 7.0 and 8.0).

    The grain map comes from ``damask.GeomGrid.load_DREAM3D``: grain-wise from the
    ``FeatureIds`` cell array when present (``feature_ids="auto"``), else cell-wise
    (cells of equal orientation and phase grouped). Orientations are the per-feature
    ``EulerAngles`` of the grain-data group when present, else the per-cell
    ``EulerAngles``. The lattice comes from ``CellEnsembleData/CrystalStructures``
    (DREAM.3D records the Laue class only: cubic gives 'cF' unless ``lattice='cI'``;
    the fundamental zone is the same) or must be given.
    """
    import damask
    import h5py
    from damask import util

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 (DREAM.3D) file")
    with h5py.File(path, "r") as f:
        version = f.attrs.get("FileVersion")
        if version is None:
            raise ValueError(f"{path} is an HDF5 file but not a DREAM.3D file (no FileVersion attribute)")
        version = version.decode() if isinstance(version, bytes) else str(version)
        base = util.DREAM3D_base_group(f, version)
        cell = util.DREAM3D_cell_data_group(f, version)
        bg = f[base]
        fid_name = None
        if feature_ids == "auto":
            fid_name = "FeatureIds" if "FeatureIds" in bg[cell] else None
        elif feature_ids:
            fid_name = feature_ids
        cell_eul = bg[cell]["EulerAngles"][()] if "EulerAngles" in bg[cell] else None
        grain_eul = None
        if fid_name is not None:
            names = (
                [grain_data]
                if grain_data not in (None, "auto")
                else [k for k in bg if k != cell and isinstance(bg[k], h5py.Group) and "EulerAngles" in bg[k]]
            )
            if grain_data is not None:
                for k in names:
                    if k in bg and "EulerAngles" in bg[k]:
                        grain_eul = bg[k]["EulerAngles"][()]
                        break
        xtal = None
        for k in bg:
            if isinstance(bg[k], h5py.Group) and "CrystalStructures" in bg[k]:
                codes = np.asarray(bg[k]["CrystalStructures"][()]).reshape(-1)
                xs = {int(x) for x in codes if int(x) != _D3D_UNKNOWN}
                if len(xs) > 1:
                    raise ValueError(f"{path}: several crystal structures {sorted(xs)}; a VE is single-phase")
                xtal = xs.pop() if xs else None
                stored = bg[k].attrs.get("matflow_vae3d_lattice")
                if stored is not None and lattice is None:
                    lattice = stored.decode() if isinstance(stored, bytes) else str(stored)
    if cell_eul is None and grain_eul is None:
        raise ValueError(f"{path}: no EulerAngles (cell- or grain-wise) found")
    fam = None if xtal is None else {_D3D_HEX: "hP", _D3D_CUBIC: "cF"}.get(xtal)
    if lattice is not None:
        lat = canonical_lattice(lattice)
        if fam is not None and (fam == "hP") != (lat == "hP"):
            raise ValueError(
                f"lattice {lattice!r} given but {path} records {'hexagonal' if fam == 'hP' else 'cubic'} crystals"
            )
    elif fam is not None:
        lat = fam
    else:
        raise ValueError(f"{path} records no supported crystal structure: pass lattice ('cF', 'cI' or 'hP')")

    grid = damask.GeomGrid.load_DREAM3D(path, feature_IDs=fid_name)
    material = np.asarray(grid.material)
    if grain_eul is not None:
        eul = np.asarray(grain_eul, dtype=np.float64).reshape(len(grain_eul), 3)
        if material.max() >= len(eul):
            raise ValueError(f"{path}: feature ids reach {material.max()} but the grain data has {len(eul)} rows")
    else:  # orientation of each material = that of its first cell
        ce = np.asarray(cell_eul, dtype=np.float64).reshape(-1, 3)  # C order (z, y, x)
        flat = material.transpose(2, 1, 0).reshape(-1)
        ids, first = np.unique(flat, return_index=True)
        eul = np.zeros((material.max() + 1, 3))
        eul[ids] = ce[first]
    gm, q = _compact(material, _eulers_to_quats(eul))
    return VolumeElement(
        gm, _fz(q, lat), lat, size=np.asarray(grid.size, float), params={"source": str(path)}, ve_id=path.stem
    )


# ---------------------------------------------------------------------------- MatFlow
#: DAMASK's unit-cell alignment (x || a, y || b*, z || c), MatFlow's key names.
UNIT_CELL_ALIGNMENT = {"x": "a", "y": "b*", "z": "c"}


def to_matflow_volume_element(ve: VolumeElement, phase_label: str | None = None, homog_label: str = "SX") -> dict:
    """MatFlow ``volume_element`` dict of the VE (as MatFlow's
    ``generate_volume_element_from_voronoi`` produces and
    ``simulate_VE_loading_damask`` consumes).

    Keys: size, grid_size, origin, orientations {type 'quat', quaternions (G, 4),
    quat_component_ordering 'scalar-vector', unit_cell_alignment, P -1},
    element_material_idx (nx, ny, nz), constituent_material_idx,
    constituent_material_fraction, constituent_phase_label,
    constituent_orientation_idx, material_homog (one material per grain). The dict
    has no lattice key (MatFlow defines phases separately); pass it back with
    ``from_matflow_volume_element(d, lattice=...)``.
    """
    g = ve.n_grains
    label = phase_label or MINIMAL_PHASES[ve.lattice][0]
    return {
        "size": [float(s) for s in ve.size],
        "grid_size": np.array(ve.grid, dtype=int),
        "origin": [0.0, 0.0, 0.0],
        "orientations": {
            "type": "quat",
            "quaternions": np.array(ve.quaternions, dtype=np.float64),
            "quat_component_ordering": "scalar-vector",
            "unit_cell_alignment": dict(UNIT_CELL_ALIGNMENT),
            "P": -1,
        },
        "element_material_idx": np.array(ve.grain_map, dtype=int),
        "constituent_material_idx": np.arange(g),
        "constituent_material_fraction": np.ones(g),
        "constituent_phase_label": np.array([label] * g),
        "constituent_orientation_idx": np.arange(g),
        "material_homog": np.array([homog_label] * g),
    }


def _matflow_quaternions(oris: dict) -> np.ndarray:
    """(R, 4) quaternions, scalar-vector, P = -1, from a MatFlow orientations dict."""
    if not isinstance(oris, dict):
        raise ValueError("volume_element['orientations'] must be a dict")
    typ = oris.get("type")
    if typ in ("euler", "EULER"):
        if "euler_angles" not in oris:
            raise ValueError("orientations of type 'euler' need 'euler_angles'")
        return _eulers_to_quats(np.atleast_2d(oris["euler_angles"]), bool(oris.get("euler_degrees", False)))
    if typ not in ("quat", "QUATERNION"):
        raise ValueError(f"unknown orientation type {typ!r}: use 'quat' or 'euler'")
    if "quaternions" not in oris:
        raise ValueError("orientations of type 'quat' need 'quaternions'")
    q = np.atleast_2d(np.asarray(oris["quaternions"], dtype=np.float64))
    if q.ndim != 2 or q.shape[1] != 4:
        raise ValueError(f"quaternions must have shape (R, 4), got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("orientations contain NaN or inf")
    order = str(oris.get("quat_component_ordering", "scalar-vector")).lower().replace("_", "-")
    if order == "vector-scalar":
        q = np.roll(q, 1, axis=1)
    elif order != "scalar-vector":
        raise ValueError(f"unknown quat_component_ordering {order!r}")
    P = int(oris.get("P", 1))  # damask_parse's default is P = +1
    if P not in (-1, 1):
        raise ValueError(f"orientations P must be +1 or -1, got {P}")
    if P == 1:
        q = q * np.array([1.0, -1.0, -1.0, -1.0])
    return q


def from_matflow_volume_element(d: dict, lattice: str | None = None, *, phases: dict | None = None) -> VolumeElement:
    """VE from a MatFlow ``volume_element`` dict.

    Single-phase, full-field VEs only (one constituent per material). The dict does
    not record the crystal structure: it is taken from ``phases`` (MatFlow's
    ``damask_phases``: label -> phase dict with ``lattice``) when given, else
    ``lattice`` is required. Orientations in any MatFlow form (quaternions in either
    component order and P convention, or Euler angles) are converted to P = -1
    quaternions and reduced to the fundamental zone.
    """
    if not isinstance(d, dict):
        raise ValueError(f"a MatFlow volume_element must be a dict, got {type(d).__name__}")
    for key in ("element_material_idx", "orientations"):
        if key not in d:
            raise ValueError(f"MatFlow volume_element is missing the key {key!r}")
    emi = np.asarray(d["element_material_idx"])
    if "grid_size" in d:
        gs = tuple(int(n) for n in np.asarray(d["grid_size"]).reshape(-1))
        if emi.shape != gs:
            if emi.size == int(np.prod(gs)) and emi.ndim == 1:
                emi = emi.reshape(gs, order="F")  # DAMASK's flat order
            else:
                raise ValueError(f"element_material_idx has shape {emi.shape} but grid_size is {gs}")
    if emi.ndim != 3 or not np.issubdtype(emi.dtype, np.integer):
        raise ValueError(f"element_material_idx must be a 3-D int array, got shape {emi.shape} dtype {emi.dtype}")
    q = _matflow_quaternions(d["orientations"])
    n_mat = int(emi.max()) + 1
    if "constituent_material_idx" in d:
        cmi = np.asarray(d["constituent_material_idx"]).reshape(-1)
        if len(np.unique(cmi)) != len(cmi):
            raise ValueError(
                "materials with several constituents are not single-crystal VEs (constituent_material_idx repeats)"
            )
        coi = np.asarray(d.get("constituent_orientation_idx", np.arange(len(cmi)))).reshape(-1)
        if len(coi) != len(cmi) or coi.max() >= len(q):
            raise ValueError("constituent_orientation_idx does not index the orientations")
        mat_q = np.full((max(n_mat, int(cmi.max()) + 1), 4), np.nan)
        mat_q[cmi] = q[coi]
        labels = np.unique(np.asarray(d.get("constituent_phase_label", ["?"])).astype(str))
    else:  # full-field style: orientation i is material i
        mat_q = q
        labels = np.unique(np.asarray(d.get("phase_labels", ["?"])[:1]).astype(str))
    if len(labels) > 1:
        raise ValueError(f"several phases {list(labels)}: a VE is single-phase")
    lat = None
    if phases:
        lats = {
            canonical_lattice(phases[lab]["lattice"])
            for lab in labels
            if lab in phases and "lattice" in (phases[lab] or {})
        }
        lat = lats.pop() if len(lats) == 1 else None
    if lattice is not None:
        if lat is not None and canonical_lattice(lattice) != lat:
            raise ValueError(f"lattice {lattice!r} given but the phases say {lat!r}")
        lat = canonical_lattice(lattice)
    if lat is None:
        raise ValueError(
            "the MatFlow volume_element does not record the crystal "
            "structure: pass lattice ('cF', 'cI' or 'hP') or phases"
        )
    used = np.unique(emi)
    if used.min() < 0 or used.max() >= len(mat_q) or not np.all(np.isfinite(mat_q[used])):
        raise ValueError("element_material_idx refers to materials without an orientation")
    gm, qq = _compact(emi, np.where(np.isfinite(mat_q), mat_q, 0.0))
    size = np.asarray(d.get("size", np.ones(3)), dtype=np.float64).reshape(3)
    return VolumeElement(gm, _fz(qq, lat), lat, size=size, params={"source": "matflow"})


# -- files holding one MatFlow volume_element dict -------------------------------------
def _to_plain(o):
    if isinstance(o, dict):
        return {k: _to_plain(v) for k, v in o.items()}
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (list, tuple)):
        return [_to_plain(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    return o


_ARRAY_KEYS = (
    "grid_size",
    "element_material_idx",
    "constituent_material_idx",
    "constituent_material_fraction",
    "constituent_phase_label",
    "constituent_orientation_idx",
    "material_homog",
)


def save_matflow_volume_element(d: dict, path, *, overwrite: bool = False) -> Path:
    """Write a MatFlow volume_element dict to .json, .yaml/.yml or .npz (nested keys
    flattened as ``orientations/quaternions``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml", ".npz"):
        raise ValueError(f"unknown MatFlow volume_element file type {suffix!r}: use .json, .yaml or .npz")
    with _atomic(path, overwrite) as tmp:
        if suffix == ".json":
            tmp.write_text(json.dumps(_to_plain(d)))
        elif suffix in (".yaml", ".yml"):
            import yaml

            tmp.write_text(yaml.safe_dump({"volume_element": _to_plain(d)}, default_flow_style=None, width=1 << 30))
        else:
            flat = {}
            for k, v in d.items():
                if isinstance(v, dict):
                    for k2, v2 in v.items():
                        flat[f"{k}/{k2}"] = np.asarray(json.dumps(v2) if isinstance(v2, dict) else v2)
                else:
                    flat[k] = np.asarray(v)
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **flat)
    return path


def load_matflow_volume_element(path) -> dict:
    """Read a MatFlow volume_element dict written by
    :func:`save_matflow_volume_element` (or a YAML/JSON with a top-level
    ``volume_element`` key, as MatFlow exports parameters)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    suffix = path.suffix.lower()
    d: dict[str, Any]
    if suffix == ".json":
        d = json.loads(path.read_text())
    elif suffix in (".yaml", ".yml"):
        import yaml

        d = yaml.safe_load(path.read_text())
    elif suffix == ".npz":
        d = {}
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                v = z[k]
                if "/" in k:
                    a, b = k.split("/", 1)
                    if v.dtype.kind == "U" and v.ndim == 0:
                        s = str(v)
                        try:
                            val = json.loads(s) if s[:1] == "{" else s
                        except json.JSONDecodeError:
                            val = s
                    elif v.ndim == 0:
                        val = v.item()
                    else:
                        val = v
                    d.setdefault(a, {})[b] = val
                else:
                    d[k] = v
    else:
        raise ValueError(f"unknown MatFlow volume_element file type {suffix!r}: use .json, .yaml or .npz")
    if isinstance(d, dict) and "volume_element" in d and isinstance(d["volume_element"], dict):
        d = d["volume_element"]
    if not isinstance(d, dict):
        raise ValueError(f"{path} does not hold a volume_element dict")
    for k in _ARRAY_KEYS:
        if k in d:
            d[k] = np.asarray(d[k])
    return d
