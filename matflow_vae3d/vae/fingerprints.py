"""The fingerprint file (``format = "matflow-vae3d/fingerprints"``): its one writer
and one reader, and the roll-invariant summary that the surrogate learns from.

Layout (HDF5, written to a temporary name and renamed)::

    ve_id    (n,) str           VE id
    mu       (n, latent) f32    the fingerprint: the encoder's mean, no noise
                                (spatial models: latent_channels × g³, channel-major)
    summary  (n, F) f32         roll-invariant summary of mu (:func:`roll_invariant_summary`)
    decoded_stats (n, D) f32    orientation statistics of the VAE's reconstruction
                                (optional, version 3), of the kind ``decoded_stats_kind``
                                (:data:`DECODED_STATS_KINDS`)
    attrs    model_sha256, latent_dim, latent_shape ([C, g, g, g] or [latent]),
             summary_kind, decoded_stats_kind, lattice, grid, source, format_version

Version-1 files (no ``summary``) read with summary = mu; files without
``decoded_stats`` (versions 1, 2) cannot feed a surrogate trained on them.

The decoded statistics are what the fingerprint says about texture, in the terms the
stress response depends on: decode with the VAE, then the volume-weighted histograms
of :func:`matflow_vae3d.microstructure.statistics.orientation_features` for sample
axes x, y and z, every voxel its own grain. For a spatial VAE they are averaged over
the VE rolled by each shift of :func:`summary_shifts`, like the summary (8 encodings
and decodings): a random periodic roll moves them by 0.15 of their spread between VEs
instead of 0.31 for one view, and the shipped surrogate's prediction by 0.2 instead of
0.5 MPa (docs/vae.md). A linear model reads almost
none of the loading-axis histogram off the summary (held-out R² 0.01 on 1,200 Mg VEs,
benchmarks/fingerprint_decodability.py); the decoder recovers it.

A periodic VE rolled by a few voxels is the same microstructure with the same
stress response. The spatial latent is *equivariant* to rolls by multiples of the
encoder's stride (4 voxels): the cells of mu roll with the VE. The moments of
:func:`roll_invariant_summary` are *invariant* to any permutation of the cells, hence
exactly to those rolls: per channel the mean over cells; the second moments
E[z_i z_j] over cells (i <= j); and per channel the mean lag-1 periodic
autocorrelation E[z(x) z(x + e_k)] over the three axes k. Rolls by other amounts change
the latent itself (the encoder subsamples), so the stored summary is the mean of the
moments over the VE rolled by each shift of :func:`summary_shifts` ({0, 2}³): exact
for rolls by multiples of 2 voxels, and within a few % of the spread between VEs for
the others (docs/vae.md). A dense (paper) fingerprint has no layout: its summary is
mu itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from matflow_vae3d.fileio import atomic_output, open_hdf5

FINGERPRINT_FORMAT = "matflow-vae3d/fingerprints"
FINGERPRINT_FORMAT_VERSION = 3
#: what ``decoded_stats`` holds (orientation statistics version : sample axes : source):
#: the statistics of one reconstruction (dense VAEs; spatial ones before 2026-12-07) ...
DECODED_STATS_ONE_VIEW = "orientation-statistics-v2:xyz:decoded"
#: ... or their mean over the reconstructions of the VE rolled by each of
#: :func:`summary_shifts` (spatial VAEs), which a periodic roll of the VE moves half as
#: much; VEs of :data:`ONE_VIEW_FROM_CELLS` cells or more take the first view only
#: (:func:`decoded_views`)
DECODED_STATS_ROLLS = "orientation-statistics-v2:xyz:decoded, mean over rolls {0,2}^3"
#: from this many cells on, a VE's decoded statistics are those of one reconstruction:
#: their change under a periodic roll, in MPa of the shipped surrogate's curve, is then
#: already below that of the 8-view mean at 16³ (0.120 MPa at 32³ one view, vs 0.166 at
#: 16³ with 8 views; benchmarks/bench_roll_invariance.py, docs/vae.md "Any grid"), and
#: each decoded view of a 64³ VE costs ~0.6 s on one core
ONE_VIEW_FROM_CELLS = 32**3


def decoded_views(n_views: int, latent_shape) -> int:
    """How many of ``n_views`` rolled views the decoded statistics of a VE with spatial
    latent ``latent_shape`` (C, gx, gy, gz) average: all below
    :data:`ONE_VIEW_FROM_CELLS` cells, else 1."""
    cells = int(np.prod([int(g) for g in tuple(latent_shape)[1:]])) * 64
    return int(n_views) if cells < ONE_VIEW_FROM_CELLS else 1


DECODED_STATS_KINDS = (DECODED_STATS_ONE_VIEW, DECODED_STATS_ROLLS)
#: the surrogate inputs a fingerprint file offers (:func:`fingerprint_inputs`)
INPUTS = ("summary", "decoded", "summary+decoded")
SUMMARY_MOMENTS = "moments-v1"
SUMMARY_SHIFTED = "moments-v1, mean over rolls {0,2}^3"
SUMMARY_IDENTITY = "identity"


def fingerprint_inputs(d: dict, inputs: str, path="") -> np.ndarray:
    """The surrogate input ``inputs`` (:data:`INPUTS`) of a read fingerprint file ``d``:
    the roll-invariant summary, the decoded statistics, or both side by side.
    ValueError naming the file when it lacks the decoded statistics."""
    if inputs not in INPUTS:
        raise ValueError(f"unknown fingerprint input {inputs!r}: use one of {', '.join(INPUTS)}")
    parts = []
    if "summary" in inputs:
        parts.append(np.asarray(d["summary"]))
    if "decoded" in inputs:
        if "decoded_stats" not in d or d.get("decoded_stats_kind") not in DECODED_STATS_KINDS:
            raise ValueError(
                f"{path or 'this fingerprint file'} has no decoded statistics of a known kind: "
                "fingerprint the VEs again with this version (vae3d fingerprint), or use the summary input"
            )
        parts.append(np.asarray(d["decoded_stats"]))
    return np.concatenate(parts, axis=1).astype(np.float32)


def input_kind(d: dict, inputs: str) -> str:
    """What the input ``inputs`` of a read fingerprint file ``d`` is made of beyond the
    VAE: the decoded statistics' kind when it includes them, else ''."""
    return str(d.get("decoded_stats_kind", "")) if "decoded" in inputs else ""


def recorded_input_kind(meta: dict) -> str:
    """The input kind a trained model's ``meta`` records (``input_kind``); a model saved
    before kinds were recorded (2026-12-07) read one view's decoded statistics when its
    ``inputs`` included them, else nothing beyond the VAE ('')."""
    if "input_kind" in meta:
        return str(meta["input_kind"])
    return DECODED_STATS_ONE_VIEW if "decoded" in str(meta.get("inputs", "")) else ""


def check_same_input_kind(expected: str, got: str, expected_what: str, got_what: str) -> None:
    """Inputs of different kinds (e.g. decoded statistics of one view vs the mean over
    rolls) are never mixed or fed to a model trained on the other. ValueError."""
    if str(got) != str(expected):
        raise ValueError(
            f"{expected_what} hold decoded statistics of kind {str(expected)!r}, {got_what} of kind "
            f"{str(got)!r}: fingerprint both with the same version (vae3d fingerprint) or retrain the surrogate"
        )


def check_same_vae(expected: str, got: str, expected_what: str, got_what: str) -> None:
    """The one rule for fingerprints: those of different VAEs (different
    ``model_sha256``) live in different latent spaces and are never mixed or fed to a
    model trained on another VAE's. ValueError naming both sides."""
    if str(got) != str(expected):
        raise ValueError(
            f"{expected_what} come from VAE {str(expected)[:16] or '(none)'}..., but {got_what} come from VAE "
            f"{str(got)[:16] or '(none)'}...: fingerprints of different VAEs live in different latent spaces"
        )


def summary_shifts(stride: int = 4) -> list[tuple[int, int, int]]:
    """The rolls (voxels per axis) whose moments the stored summary averages: each
    axis 0 or stride/2, 8 shifts for the stride-4 encoder."""
    half = stride // 2
    return [(i, j, k) for i in (0, half) for j in (0, half) for k in (0, half)]


def summary_kind(latent_shape) -> str:
    """'moments-v1' for a spatial latent (C, g, g, g), 'identity' for a flat one."""
    return SUMMARY_MOMENTS if len(tuple(latent_shape)) == 4 else SUMMARY_IDENTITY


def roll_invariant_summary(mu, latent_shape) -> np.ndarray:
    """Roll-invariant summary of fingerprints.

    mu: (n, latent) float; latent_shape: (C, g, g, g) for a spatial latent (mu is its
    channel-major flattening) or (latent,) for a dense one. Returns (n, F) float32
    with F = C + C(C+1)/2 + C (spatial) or F = latent (dense: mu unchanged).
    """
    mu = np.asarray(mu, dtype=np.float64)
    shape = tuple(int(s) for s in latent_shape)
    if mu.ndim != 2 or mu.shape[1] != int(np.prod(shape)):
        raise ValueError(f"fingerprints of shape {mu.shape} do not match latent shape {shape}")
    if len(shape) != 4:
        return mu.astype(np.float32)
    n, C = mu.shape[0], shape[0]
    z = mu.reshape(n, C, -1)  # (n, C, cells)
    mean = z.mean(2)
    iu = np.triu_indices(C)
    second = np.einsum("nic,njc->nij", z, z)[:, iu[0], iu[1]] / z.shape[2]
    zz = mu.reshape((n,) + shape)
    lag = sum((zz * np.roll(zz, 1, axis=k)).mean(axis=(2, 3, 4)) for k in (2, 3, 4)) / 3.0
    return np.concatenate([mean, second, lag], axis=1).astype(np.float32)


def write_fingerprints(
    path,
    ve_ids,
    mu,
    model_sha256: str,
    lattice: str,
    grid,
    source: str,
    latent_shape=None,
    attrs: dict | None = None,
    summary=None,
    summary_kind_: str | None = None,
    decoded_stats=None,
    decoded_stats_kind: str = DECODED_STATS_ONE_VIEW,
) -> None:
    """Write a fingerprint file (temporary file, then rename).

    ve_ids: (n,) str; mu: (n, latent) float32; grid: 3 ints or one; latent_shape:
    (C, g, g, g) of a spatial model, default (latent,); attrs: extra root attributes
    (e.g. the feature version of baseline features written in this format); summary:
    (n, F) precomputed summary (default: :func:`roll_invariant_summary` of mu) and
    its kind; decoded_stats: (n, D) orientation statistics of the reconstruction,
    optional, of the kind ``decoded_stats_kind`` (one of :data:`DECODED_STATS_KINDS`).
    """
    import h5py

    mu = np.asarray(mu, dtype=np.float32)
    if mu.ndim != 2 or len(mu) != len(ve_ids):
        raise ValueError(f"mu must be (n, latent) with n = {len(ve_ids)}, got {mu.shape}")
    shape = tuple(int(s) for s in (latent_shape or (mu.shape[1],)))
    kind = summary_kind_ or summary_kind(shape)
    if summary is None:
        summary = roll_invariant_summary(mu, shape)
    summary = np.asarray(summary, dtype=np.float32)
    if summary.ndim != 2 or len(summary) != len(mu):
        raise ValueError(f"summary must be (n, F) with n = {len(mu)}, got {summary.shape}")
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FINGERPRINT_FORMAT
        f.attrs["format_version"] = FINGERPRINT_FORMAT_VERSION
        f.create_dataset("ve_id", data=np.array(ve_ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("mu", data=mu)
        f.create_dataset("summary", data=summary)
        if decoded_stats is not None:
            dec = np.asarray(decoded_stats, dtype=np.float32)
            if dec.ndim != 2 or len(dec) != len(mu):
                raise ValueError(f"decoded_stats must be (n, D) with n = {len(mu)}, got {dec.shape}")
            if decoded_stats_kind not in DECODED_STATS_KINDS:
                raise ValueError(f"unknown decoded statistics kind {decoded_stats_kind!r}")
            f.create_dataset("decoded_stats", data=dec)
            f.attrs["decoded_stats_kind"] = decoded_stats_kind
        f.attrs["model_sha256"] = model_sha256
        f.attrs["latent_dim"] = int(mu.shape[1])
        f.attrs["latent_shape"] = np.asarray(shape, dtype=np.int64)
        f.attrs["summary_kind"] = kind
        f.attrs["lattice"] = lattice
        f.attrs["grid"] = np.asarray(tuple(grid) if hasattr(grid, "__len__") else (grid,) * 3, dtype=np.int64)
        f.attrs["source"] = source
        for k, v in (attrs or {}).items():
            f.attrs[k] = v


def read_fingerprints(path) -> dict:
    """Read a fingerprint file -> {'ve_id': list[str], 'mu': (n, latent) float32,
    'summary': (n, F) float32, 'latent_shape': tuple, **attrs}. FileNotFoundError /
    ValueError (naming the file) on a missing, foreign or incomplete file."""
    path = Path(path)
    with open_hdf5(path, "fingerprint file") as f:
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != FINGERPRINT_FORMAT:
            raise ValueError(f"{path} is not a fingerprint file (format {fmt!r}, expected {FINGERPRINT_FORMAT!r})")
        for name in ("ve_id", "mu"):
            if name not in f:
                raise ValueError(f"{path}: fingerprint file lacks dataset {name!r}")
        out = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        out["ve_id"] = [s.decode() if isinstance(s, bytes) else str(s) for s in f["ve_id"][()]]
        out["mu"] = f["mu"][()]
        out["summary"] = f["summary"][()] if "summary" in f else out["mu"]
        if "decoded_stats" in f:
            out["decoded_stats"] = f["decoded_stats"][()]
    mu = np.asarray(out["mu"])
    out["latent_shape"] = tuple(int(s) for s in out.get("latent_shape", (mu.shape[-1] if mu.ndim == 2 else -1,)))
    out.setdefault("summary_kind", SUMMARY_IDENTITY)
    return out
