"""Baselines on the same table, so users can see what the VAE fingerprint adds.

1. :func:`mean_curve`: the training rows' mean stress curve for every VE (what a
   model that ignores the microstructure achieves).
2. Orientation statistics (:func:`orientation_features`): volume-weighted
   histograms computed directly from a VE's grains, written as a fingerprint-format
   file (:func:`write_feature_file`) so that every surrogate command accepts them:

   - loading axis (sample x) in the crystal frame, reduced by the crystal symmetry:
     for hP, |cos| of its angle to the c axis (6 bins) x its azimuth folded to
     [0, 30 deg] (3 bins); for cubic, the largest and smallest absolute direction
     cosines (5 x 5 bins). Under uniaxial load this sets each grain's Schmid factors.
   - marginal histograms of the FZ Bunge angles, each over its fundamental-zone range
     (hP: 360, 90, 60 deg; 3 x 8 bins).
   - log of the mean grain volume in voxels.

   Histograms are volume fractions x number of bins (mean 1), so they need no
   further input scaling.

Usage: ``python -m matflow_vae3d.surrogate.baselines ves.h5 features.h5``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from ..microstructure.statistics import FEATURE_VERSION, orientation_features
from ..vae.fingerprints import write_fingerprints
from .table import SurrogateTable


def mean_curve(table: SurrogateTable) -> np.ndarray:
    """(n_states,) MPa: mean curve of the table's train rows."""
    tr = table.rows("train")
    if len(tr) == 0:
        raise ValueError("no training rows for the mean-curve baseline")
    return table.Y[tr].mean(axis=0)


def feature_sha256(lattice: str, euler_bins: int, axes: str = "x") -> str:
    """Identifier of the feature definition (stored as ``model_sha256``)."""
    tail = "" if axes == "x" else f":{axes}"  # the uniaxial features keep their identifier
    return hashlib.sha256(f"{FEATURE_VERSION}:{lattice}:{euler_bins}{tail}".encode()).hexdigest()


def write_feature_file(
    ves_path, out_path, euler_bins: int = 8, progress: bool = True, overwrite: bool = False, axes: str = "x"
) -> Path:
    """Orientation-statistics features of every VE of a VE dataset, written as a
    fingerprint-format HDF5 file (``model_sha256`` = :func:`feature_sha256`);
    ``axes`` as in :func:`orientation_features`."""
    from tqdm import tqdm

    from matflow_vae3d.datasets import VEDataset

    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; refusing to overwrite it")
    with VEDataset(ves_path) as ds:
        feats, ids, lattice = [], [], None
        for i in tqdm(range(len(ds)), desc="orientation features", disable=not progress):
            ve = ds[i]
            lattice = ve.lattice
            feats.append(orientation_features(ve.quaternions, ve.grain_map, ve.lattice, euler_bins, axes))
            ids.append(ve.ve_id if ve.ve_id is not None else str(i))
        grid = ve.grid if len(ds) else (0, 0, 0)
    if not feats or lattice is None:
        raise ValueError(f"{ves_path}: the VE dataset is empty")
    mu = np.stack(feats)
    write_fingerprints(
        out_path,
        ids,
        mu,
        model_sha256=feature_sha256(lattice, euler_bins, axes),
        lattice=lattice,
        grid=grid,
        source=str(ves_path),
        attrs={"features": FEATURE_VERSION, "axes": axes},
    )
    return out_path


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 3:
        sys.exit("usage: python -m matflow_vae3d.surrogate.baselines VES.h5 OUT_FEATURES.h5")
    print(write_feature_file(sys.argv[1], sys.argv[2]))
