"""Mechanical load cases with mixed boundary conditions, as DAMASK_grid reads them.

A step prescribes, per component of the volume-averaged deformation, either the
deformation-gradient rate ``dot_F`` (or ``F`` at the end of the step) or the first
Piola-Kirchhoff stress ``P``; each component is prescribed by exactly one of them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import yaml


@dataclasses.dataclass
class LoadStep:
    """One DAMASK load step.

    Attributes
    ----------
    deformation : (3, 3) float64, NaN where not prescribed
        Values of the prescribed deformation components.
    deformation_kind : str
        'dot_F' (rate, 1/s) or 'F' (target at the end of the step, absolute).
    stress : (3, 3) float64, Pa, NaN where not prescribed
        Prescribed mean first Piola-Kirchhoff stress components.
    t : float, s
        Duration of the step.
    N : int
        Number of increments.
    f_out : int
        Output every f_out increments.
    """

    deformation: np.ndarray
    stress: np.ndarray
    t: float
    N: int
    deformation_kind: str = "dot_F"
    f_out: int = 1

    def __post_init__(self):
        self.deformation = np.asarray(self.deformation, dtype=np.float64).reshape(3, 3)
        self.stress = np.asarray(self.stress, dtype=np.float64).reshape(3, 3)
        if self.deformation_kind not in ("dot_F", "F"):
            raise ValueError(f"deformation_kind must be 'dot_F' or 'F', got {self.deformation_kind!r}")
        both = ~np.isnan(self.deformation) & ~np.isnan(self.stress)
        neither = np.isnan(self.deformation) & np.isnan(self.stress)
        if both.any() or neither.any():
            raise ValueError(
                "each component must be prescribed by exactly one of deformation and "
                f"stress; both at {np.argwhere(both).tolist()}, "
                f"neither at {np.argwhere(neither).tolist()}"
            )
        if not (self.t > 0 and int(self.N) >= 1 and int(self.f_out) >= 1):
            raise ValueError(f"need t > 0, N >= 1, f_out >= 1; got t={self.t}, N={self.N}")
        self.N = int(self.N)
        self.f_out = int(self.f_out)

    @property
    def stress_mask(self) -> np.ndarray:
        """(3, 3) bool: True where the stress is prescribed."""
        return ~np.isnan(self.stress)


@dataclasses.dataclass
class LoadCase:
    """A sequence of load steps (DAMASK ``loadstep`` list)."""

    steps: list[LoadStep]
    solver: str = "spectral_basic"

    @classmethod
    def uniaxial(cls, axis: int = 0, rate: float = 1e-3, strain: float = 0.01, N: int = 20) -> LoadCase:
        """Uniaxial tension: dot_F[axis, axis] = rate (1/s), lateral normal P = 0,
        all off-diagonal dot_F = 0, to F[axis, axis] = 1 + strain in N increments.

        The default is the paper's / DAMASK's tensionX: F_xx to 1.01 in 20 increments
        at 1e-3 /s (t = 10 s).
        """
        dot_F = np.zeros((3, 3))
        P = np.full((3, 3), np.nan)
        for i in range(3):
            if i != axis:
                dot_F[i, i] = np.nan
                P[i, i] = 0.0
        dot_F[axis, axis] = rate
        return cls([LoadStep(dot_F, P, t=strain / rate, N=N)])

    @property
    def n_increments(self) -> int:
        """Total increments over all steps."""
        return sum(s.N for s in self.steps)

    def times(self) -> np.ndarray:
        """(n_increments + 1,) s: time at the initial state and at each increment end."""
        t = [0.0]
        for s in self.steps:
            t0 = t[-1]
            t.extend(t0 + s.t * (k + 1) / s.N for k in range(s.N))
        return np.asarray(t)

    # ------------------------------------------------------------------ DAMASK I/O
    def to_damask(self) -> dict[str, Any]:
        """The load case as the dict DAMASK_grid reads from load.yaml."""

        def mat(a):
            return [["x" if np.isnan(v) else float(v) for v in row] for row in a]

        steps = []
        for s in self.steps:
            steps.append(
                {
                    "boundary_conditions": {
                        "mechanical": {
                            s.deformation_kind: mat(s.deformation),
                            "P": mat(s.stress),
                        }
                    },
                    "discretization": {"t": float(s.t), "N": s.N},
                    "f_out": s.f_out,
                }
            )
        return {"solver": {"mechanical": self.solver}, "loadstep": steps}

    @classmethod
    def from_damask(cls, load: dict[str, Any] | str | Path) -> LoadCase:
        """Read a DAMASK_grid load case (dict or path to load.yaml).

        Supported: ``solver.mechanical`` spectral_basic/spectral_polarization/FEM
        (all solved the same way here), mechanical boundary conditions given by
        ``dot_F`` or ``F`` together with ``P``, ``discretization`` with ``t`` and ``N``
        (``r``, geometric spacing, only if 1), ``f_out``. Anything else (``L``,
        ``R``, ``f_restart``, ``estimate_rate``, thermal or damage conditions, ...)
        is refused by name rather than ignored.
        """
        if not isinstance(load, dict):
            load = yaml.safe_load(Path(load).read_text())
        if not isinstance(load, dict) or "loadstep" not in load:
            raise ValueError("not a DAMASK load case: no 'loadstep' list")
        unknown = set(load) - {"solver", "loadstep"}
        if unknown:
            raise ValueError(f"unsupported load-case keys: {sorted(unknown)}")
        solver = load.get("solver", {}).get("mechanical", "spectral_basic")
        other_solvers = set(load.get("solver", {})) - {"mechanical"}
        if other_solvers:
            raise ValueError(f"unsupported solver fields: {sorted(other_solvers)}")
        steps = []
        for k, ls in enumerate(load["loadstep"]):
            unknown = set(ls) - {"boundary_conditions", "discretization", "f_out"}
            if unknown:
                raise ValueError(f"load step {k}: unsupported keys {sorted(unknown)}")
            bc = ls["boundary_conditions"]
            if set(bc) - {"mechanical"}:
                raise ValueError(f"load step {k}: unsupported boundary conditions {sorted(set(bc) - {'mechanical'})}")
            mech = dict(bc["mechanical"])
            kinds = [key for key in ("dot_F", "F") if key in mech]
            unsupported = set(mech) - {"dot_F", "F", "P"}
            if unsupported:
                raise ValueError(
                    f"load step {k}: unsupported mechanical conditions {sorted(unsupported)} "
                    "(supported: dot_F or F, with P)"
                )
            if len(kinds) != 1:
                raise ValueError(f"load step {k}: give exactly one of dot_F and F")

            def parse(a):
                return np.array([[np.nan if v == "x" else float(v) for v in row] for row in a])

            deformation = parse(mech[kinds[0]])
            stress = parse(mech["P"]) if "P" in mech else np.where(np.isnan(deformation), 0.0, np.nan)
            disc = ls["discretization"]
            if set(disc) - {"t", "N", "r"}:
                raise ValueError(
                    f"load step {k}: unsupported discretization keys {sorted(set(disc) - {'t', 'N', 'r'})}"
                )
            if float(disc.get("r", 1.0)) != 1.0:
                raise ValueError(f"load step {k}: geometric increment spacing r != 1 is not supported")
            steps.append(
                LoadStep(
                    deformation,
                    stress,
                    t=float(disc["t"]),
                    N=int(disc["N"]),
                    deformation_kind=kinds[0],
                    f_out=int(ls.get("f_out", 1)),
                )
            )
        return cls(steps, solver=solver)
