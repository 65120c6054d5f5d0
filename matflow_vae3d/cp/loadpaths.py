"""Load paths: named DAMASK load cases, a YAML file of them, and seeded random paths.

A load path is a :class:`~matflow_vae3d.cp.loadcase.LoadCase` (DAMASK ``load.yaml``
terms: steps of ``dot_F``/``F`` with ``P`` conditions, time, increments). A paths file
holds several, each with an id::

    paths:
      - id: tensionX
        loadstep: [...]          # exactly as in DAMASK's load.yaml
        solver: {mechanical: spectral_basic}     # optional

:func:`random_paths` draws paths of the kinds in :data:`PATH_KINDS` for training a
load-path surrogate. Every kind keeps the stress-free conditions it implies and the
off-diagonal deformation rates at zero unless it shears:

========================= ===============================================================
uniaxial                  one normal rate (tension or compression), the other normals P = 0
equibiaxial               two equal normal rates, the third normal P = 0
plane_strain              one normal rate, a second normal held (rate 0), the third P = 0
shear                     simple shear, dot_F[i, j] = rate (i != j), every other rate 0
reversal                  uniaxial, then the same axis reversed (tension -> compression
                          or back) in a second step
change                    uniaxial along one axis, then along another (non-proportional)
========================= ===============================================================

Strain budget: the nominal von Mises equivalent strain accumulated over the path
(incompressible estimate: uniaxial |e|, equibiaxial 2|e|, plane strain 2|e|/sqrt 3,
shear |gamma|/sqrt 3, summed over steps) is at most ``max_strain`` (default 2 %).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .loadcase import LoadCase, LoadStep

PATH_KINDS = ("uniaxial", "equibiaxial", "plane_strain", "shear", "reversal", "change")

#: nominal von Mises equivalent strain per unit of the prescribed strain, by step type
_EQUIVALENT = {"uniaxial": 1.0, "equibiaxial": 2.0, "plane_strain": 2.0 / math.sqrt(3.0), "shear": 1.0 / math.sqrt(3.0)}

_ID = re.compile(r"^[A-Za-z0-9_.+-]+$")


# ------------------------------------------------------------------------- steps
def _normal_step(rates: dict[int, float], held: tuple[int, ...], t: float, N: int) -> LoadStep:
    """Normal rates on ``rates`` axes, rate 0 on ``held`` axes, P = 0 on the other
    normals, zero off-diagonal rates."""
    dot_F = np.zeros((3, 3))
    P = np.full((3, 3), np.nan)
    for i in range(3):
        if i in rates:
            dot_F[i, i] = rates[i]
        elif i not in held:
            dot_F[i, i] = np.nan
            P[i, i] = 0.0
    return LoadStep(dot_F, P, t=t, N=N)


def _shear_step(i: int, j: int, rate: float, t: float, N: int) -> LoadStep:
    dot_F = np.zeros((3, 3))
    dot_F[i, j] = rate
    return LoadStep(dot_F, np.full((3, 3), np.nan), t=t, N=N)


def path_of(kind: str, *, axes=(0, 1), strains=(0.01,), rate: float = 1e-3, N: int = 10) -> LoadCase:
    """One path of ``kind`` (:data:`PATH_KINDS`).

    axes : the loading axis (and the second axis: biaxial partner, held axis, shear
        plane normal, or the axis the load changes to), 0-2
    strains : signed nominal strain of each step (one; two for 'reversal' and
        'change'); a positive one stretches
    rate : |strain rate|, 1/s; N : increments per step
    """
    if kind not in PATH_KINDS:
        raise ValueError(f"unknown path kind {kind!r}: use one of {', '.join(PATH_KINDS)}")
    a, b = (int(x) for x in axes)
    if not (0 <= a < 3 and 0 <= b < 3) or a == b:
        raise ValueError(f"axes must be two different axes in 0..2, got {tuple(axes)}")
    need = 2 if kind in ("reversal", "change") else 1
    if len(strains) != need or any(not np.isfinite(e) or e == 0 for e in strains):
        raise ValueError(f"path kind {kind!r} needs {need} non-zero strain(s), got {tuple(strains)}")
    if not rate > 0 or int(N) < 1:
        raise ValueError(f"need rate > 0 and N >= 1, got rate={rate}, N={N}")

    def t(e):
        return abs(e) / rate

    def signed(e):
        return math.copysign(rate, e)

    e0 = strains[0]
    if kind == "uniaxial":
        steps = [_normal_step({a: signed(e0)}, (), t(e0), N)]
    elif kind == "equibiaxial":
        steps = [_normal_step({a: signed(e0), b: signed(e0)}, (), t(e0), N)]
    elif kind == "plane_strain":
        steps = [_normal_step({a: signed(e0)}, (b,), t(e0), N)]
    elif kind == "shear":
        steps = [_shear_step(a, b, signed(e0), t(e0), N)]
    elif kind == "reversal":
        e1 = strains[1]
        if np.sign(e1) == np.sign(e0):
            raise ValueError(f"a reversal needs strains of opposite sign, got {tuple(strains)}")
        steps = [_normal_step({a: signed(e0)}, (), t(e0), N), _normal_step({a: signed(e1)}, (), t(e1), N)]
    else:  # change
        e1 = strains[1]
        steps = [_normal_step({a: signed(e0)}, (), t(e0), N), _normal_step({b: signed(e1)}, (), t(e1), N)]
    return LoadCase(steps)


def equivalent_strain(kind: str, strains) -> float:
    """Nominal von Mises equivalent strain accumulated over a path of ``kind`` (module
    doc), from its signed step strains."""
    per = _EQUIVALENT["uniaxial" if kind in ("reversal", "change") else kind]
    return float(sum(per * abs(e) for e in strains))


# ------------------------------------------------------------------------ random
def random_paths(
    n: int,
    seed: int = 0,
    kinds=PATH_KINDS,
    max_strain: float = 0.02,
    min_strain: float | None = None,
    rate: float = 1e-3,
    N: int = 10,
) -> dict[str, LoadCase]:
    """``n`` random paths {id: LoadCase}, kinds drawn uniformly from ``kinds``, axes
    at random, strains such that the path's equivalent strain lies in
    [min_strain, max_strain] (min_strain default: 0.4 %, or max_strain if smaller).
    Path i of a seed is always the same path: its id is ``p<seed>-<i:05d>-<kind>``."""
    out = {}
    for i in range(int(n)):
        pid, lc = random_path(seed, i, kinds=kinds, max_strain=max_strain, min_strain=min_strain, rate=rate, N=N)
        out[pid] = lc
    return out


def random_path(
    seed: int,
    index: int,
    kinds=PATH_KINDS,
    max_strain: float = 0.02,
    min_strain: float | None = None,
    rate: float = 1e-3,
    N: int = 10,
) -> tuple[str, LoadCase]:
    """Path ``index`` of the random stream ``seed`` as (id, LoadCase); see
    :func:`random_paths`."""
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in PATH_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown path kind(s) {bad}: use {', '.join(PATH_KINDS)}")
    if min_strain is None:
        min_strain = min(0.004, max_strain)
    if not 0 < min_strain <= max_strain:
        raise ValueError(f"need 0 < min_strain <= max_strain, got {min_strain}, {max_strain}")
    i = int(index)
    rng = np.random.default_rng([int(seed), i])  # per-path stream: path i independent of n
    kind = kinds[int(rng.integers(len(kinds)))]
    a, b = (int(x) for x in rng.permutation(3)[:2])
    total = rng.uniform(min_strain, max_strain)
    per = _EQUIVALENT["uniaxial" if kind in ("reversal", "change") else kind]
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if kind in ("reversal", "change"):
        f = rng.uniform(0.3, 0.7)  # share of the budget in the first step
        e0, e1 = sign * f * total / per, (1 - f) * total / per
        e1 = -sign * e1 if kind == "reversal" else (1.0 if rng.random() < 0.5 else -1.0) * e1
        strains: tuple[float, ...] = (e0, e1)
    else:
        strains = (sign * total / per,)
    return f"p{seed}-{i:05d}-{kind}", path_of(kind, axes=(a, b), strains=strains, rate=rate, N=N)


# -------------------------------------------------------------------------- file
def write_paths(paths: dict[str, LoadCase], path) -> Path:
    """Write {id: LoadCase} as a paths YAML file (module doc)."""
    from ..fileio import atomic_output

    for pid in paths:
        _check_id(pid)
    doc = {"paths": [{"id": pid, **lc.to_damask()} for pid, lc in paths.items()]}
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    return path


def read_paths(path) -> dict[str, LoadCase]:
    """Read a paths YAML file -> {id: LoadCase}; a plain DAMASK load.yaml is one path
    named after the file. ValueError naming the path and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paths file not found: {path}")
    doc: Any = yaml.safe_load(path.read_text())
    if isinstance(doc, dict) and "loadstep" in doc:
        return {path.stem: LoadCase.from_damask(doc)}
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), list) or not doc["paths"]:
        raise ValueError(f"{path}: expected a 'paths' list (or a DAMASK load.yaml)")
    out: dict[str, LoadCase] = {}
    for k, entry in enumerate(doc["paths"]):
        if not isinstance(entry, dict) or "id" not in entry:
            raise ValueError(f"{path}: path {k} has no 'id'")
        pid = _check_id(str(entry["id"]))
        if pid in out:
            raise ValueError(f"{path}: duplicate path id {pid!r}")
        try:
            out[pid] = LoadCase.from_damask({key: v for key, v in entry.items() if key != "id"})
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: path {pid!r}: {exc}") from exc
    return out


def _check_id(pid: str) -> str:
    if not _ID.match(pid):
        raise ValueError(f"path id {pid!r}: use letters, digits and _ . + - only")
    return pid
