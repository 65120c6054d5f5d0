"""Writers of fingerprint / CP-result files in the formats of docs/formats.md (CP
results through the product's cp.results.ResultsWriter), and a smooth synthetic stress
response, for the surrogate tests (no tests in here)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from matflow_vae3d.cp.results import ResultsWriter, SimulationRecord

T = np.linspace(0.0, 10.0, 21)  # s, 20 increments at 1e-3 /s to 1 % strain
STRAIN = T * 1e-3


def write_fingerprints(path, ve_id, mu, model_sha256="vae-A", lattice="hP", fmt=None):
    mu = np.asarray(mu, dtype=np.float32)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = fmt or "matflow-vae3d/fingerprints"
        f.attrs["format_version"] = 1
        f.create_dataset("ve_id", data=np.asarray(ve_id, dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("mu", data=mu)
        f.attrs["model_sha256"] = model_sha256
        f.attrs["latent_dim"] = mu.shape[1]
        f.attrs["lattice"] = lattice
        f.attrs["grid"] = np.array([16, 16, 16])
    return path


def write_stresses(path, ve_id, sxx_mpa, status=None, reason=None, t=T, lattice="hP"):
    """sxx_mpa : (n, n_states) MPa; written as sigma (n, n_states, 3, 3) Pa with the
    lateral components 0 (uniaxial), F_xx = 1 + strain (so P = J sigma F^-T = sigma),
    one SimulationRecord per VE through the product's writer (cp.results.ResultsWriter),
    replacing any file already at ``path``."""
    sxx = np.asarray(sxx_mpa, dtype=np.float64)
    n, ns = sxx.shape
    status = ["converged"] * n if status is None else status
    reason = [""] * n if reason is None else reason
    sigma = np.zeros((n, ns, 3, 3))
    sigma[:, :, 0, 0] = sxx * 1e6
    F = np.broadcast_to(np.eye(3), (n, ns, 3, 3)).copy()
    F[:, :, 0, 0] = 1 + np.asarray(t) * 1e-3
    sigma[~np.isfinite(sxx)] = np.nan
    ok = np.isfinite(sxx)
    n_conv = np.where(ok.all(axis=1), ns - 1, np.argmin(ok, axis=1) - 1)
    Path(path).unlink(missing_ok=True)
    with ResultsWriter(
        path,
        t=np.asarray(t, dtype=np.float64),
        material="synthetic",
        loadcase="uniaxial x, 20 increments",
        solver="builtin",
        lattice=lattice,
    ) as w:
        for k in range(n):
            w.append(
                SimulationRecord(
                    ve_id=ve_id[k],
                    solver="builtin",
                    status=status[k],
                    converged=status[k] == "converged",
                    reason=reason[k],
                    t=np.asarray(t, dtype=np.float64),
                    F=F[k],
                    P=sigma[k],
                    sigma=sigma[k],
                    n_converged=int(n_conv[k]),
                    wall_s=1.0,
                )
            )
    return path


def smooth_response(X, strain=STRAIN):
    """A smooth elastic-plastic curve per input (MPa): sigma = s(x) tanh(E(x) eps / s(x)),
    saturation stress s in ~[110, 190] MPa and modulus E in ~[40, 50] GPa depending
    smoothly on the first three inputs. X : (n, d >= 3) -> (n, n_states)."""
    X = np.asarray(X, dtype=np.float64)
    s = 150 + 40 * np.tanh(0.8 * X[:, 0] + 0.4 * X[:, 1])
    E = 45e3 * (1 + 0.1 * np.sin(X[:, 2]))
    return s[:, None] * np.tanh(E[:, None] * strain[None] / s[:, None])
