"""The shipped Mg and Cu reference sets (data/reference): VEs and their CP curves read back by
the formats' own readers, ids join, and the curves are physical (tension along x:
sigma_xx rises monotonically from 0, lateral stresses ~0)."""

from importlib.resources import files

import numpy as np

from matflow_vae3d.cp.results import read_results
from matflow_vae3d.datasets import VEDataset

REF = files("matflow_vae3d") / "data" / "reference"


def test_reference_set_reads_joins_and_is_physical():
    r = read_results(str(REF / "mg16_s301_cp.h5"))
    n = len(r["ve_id"])
    assert n == 1200 and set(r["status"]) == {"converged"}
    with VEDataset(str(REF / "mg16_s301_ves.h5")) as ds:
        assert ds.lattice == "hP" and ds.grid == (16, 16, 16) and len(ds) == 1200
        assert list(r["ve_id"]) == ds.ve_ids[:n]
    s = r["sigma"] / 1e6
    sxx = s[:, :, 0, 0]
    assert (sxx[:, 0] == 0).all() and (np.diff(sxx, axis=1) > 0).all()
    assert 60 < sxx[:, -1].min() and sxx[:, -1].max() < 120
    assert np.abs(s[:, -1, [1, 2], [1, 2]]).max() < 0.02 * sxx[:, -1].min()


def test_cubic_reference_set_reads_joins_and_is_physical():
    """The shipped Cu (cF) set: at least 200 converged curves of 16³ VEs, ids joined in
    dataset order, tension along x with stress-free lateral faces, and the softer Cu
    response (about 20-24 MPa at 1 % strain against Mg's 70-100)."""
    r = read_results(str(REF / "cu16_s302_cp.h5"))
    n = len(r["ve_id"])
    assert n >= 200 and set(r["status"]) == {"converged"}
    with VEDataset(str(REF / "cu16_s302_ves.h5")) as ds:
        assert ds.lattice == "cF" and ds.grid == (16, 16, 16) and len(ds) == 250
        assert list(r["ve_id"]) == ds.ve_ids[:n]
    s = r["sigma"] / 1e6
    sxx = s[:, :, 0, 0]
    assert (sxx[:, 0] == 0).all() and (np.diff(sxx, axis=1) > 0).all()
    assert 15 < sxx[:, -1].min() and sxx[:, -1].max() < 30
    assert np.abs(s[:, -1, [1, 2], [1, 2]]).max() < 0.02 * sxx[:, -1].min()
