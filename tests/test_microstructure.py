"""VE generation: parameters, presets, determinism, exact tessellation and the
statistics of generated VEs (sizes, shapes, orientations) against what was asked.
Grids of 32^3 or less; tolerances are stated in each test's docstring."""

import json

import damask
import numpy as np
import pytest

from matflow_vae3d import crystal as C
from matflow_vae3d.microstructure import PRESETS, VEParams, VolumeElement, generate_ve, generate_ves, get_preset
from matflow_vae3d.microstructure.grain_sizes import esd_bounds, esd_from_volumes, sample_grain_sizes
from matflow_vae3d.microstructure.tessellation import normalised_aspect, power_tessellation
from matflow_vae3d.microstructure.textures import TEXTURE_COMPONENTS, TEXTURE_MILLER, sample_orientations


@pytest.fixture(scope="module")
def train_ves():
    """Four train-preset VEs at 32^3 (~310 grains each)."""
    return [generate_ve(get_preset("train", grid=32), s) for s in range(4)]


# ----------------------------------------------------------------------------- params
@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(grid=7), "grid must be >= 8"),
        (dict(grid=(16, 16)), "grid must be"),
        (dict(mean_esd=0), "mean_esd must be > 0"),
        (dict(mean_esd=-3), "mean_esd must be > 0"),
        (dict(mean_esd=float("nan")), "mean_esd must be finite"),
        (dict(sigma=-0.1), "sigma must be >= 0"),
        (dict(texture="fibre"), "unknown texture"),
        (dict(lattice="tP"), "unknown crystal structure"),
        (dict(aspect_ratio=(2, 1)), "aspect_ratio"),
        (dict(aspect_ratio=(2, 0, 1)), "aspect_ratio"),
        (dict(texture_eulers_deg=(0, float("nan"), 0)), "texture_eulers_deg"),
        (dict(texture_scatter_deg=float("inf")), "finite"),
    ],
)
def test_params_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        VEParams(**kw)


def test_params_dict_round_trip():
    p = VEParams(
        grid=(16, 24, 32),
        mean_esd=4.0,
        aspect_ratio=(2, 1, 1),
        texture="custom",
        texture_eulers_deg=(10, 20, 30),
        lattice="hcp",
        name="x",
    )
    d = json.loads(json.dumps(p.to_dict()))
    assert VEParams.from_dict(d) == p
    assert p.lattice == "hP" and p.grid == (16, 24, 32)
    with pytest.raises(ValueError, match="unknown VE parameter"):
        VEParams.from_dict(dict(d, colour="red"))


def test_presets():
    assert set(PRESETS) == {"train", "large", "small", "elongated", "brass", "copper", "cube", "goss", "s"}
    assert get_preset("train").mean_esd == 5.78 and get_preset("train").grid == (64, 64, 64)
    assert get_preset("large").mean_esd == 12.24 and get_preset("small").mean_esd == 2.73
    e = get_preset("elongated", grid=32, lattice="hP")
    assert e.mean_esd == 9.54 and e.aspect_ratio == (2.0, 1.0, 1.0) and e.lattice == "hP"
    for t in ("brass", "copper", "cube", "goss", "s"):
        assert get_preset(t).texture == t and get_preset(t).mean_esd == 5.78
    with pytest.raises(ValueError, match="train, large, small"):
        get_preset("medium")


# ----------------------------------------------------------------------------- VE
def test_generate_ve_contract(train_ves):
    ve = train_ves[0]
    assert isinstance(ve, VolumeElement)
    assert ve.grain_map.shape == (32, 32, 32) and ve.grain_map.dtype == np.int32
    # contiguous ids, every grain has voxels
    assert np.array_equal(np.unique(ve.grain_map), np.arange(ve.n_grains))
    assert ve.seed == 0 and ve.params == get_preset("train", grid=32).to_dict()
    assert ve.ve_id == "train-0" and ve.lattice == "cF"
    assert np.all(damask.Orientation(ve.quaternions, lattice="cF").in_FZ)
    assert np.allclose(np.linalg.norm(ve.quaternions, axis=1), 1.0)


def test_deterministic(train_ves):
    p = get_preset("train", grid=32)
    again = generate_ve(p, 0)
    assert again.grain_map.tobytes() == train_ves[0].grain_map.tobytes()
    assert again.quaternions.tobytes() == train_ves[0].quaternions.tobytes()
    assert not np.array_equal(train_ves[1].grain_map, train_ves[0].grain_map)
    # same seed, other texture: same grain structure (independent streams)
    cube = generate_ve(get_preset("cube", grid=32), 0)
    assert np.array_equal(cube.grain_map, again.grain_map)


def test_generate_ves_order_and_workers():
    p = get_preset("large", grid=16)
    seq = list(generate_ves(p, [3, 1, 2], progress=False))
    par = list(generate_ves(p, [3, 1, 2], workers=2, progress=False))
    assert [v.seed for v in par] == [3, 1, 2]
    for a, b in zip(seq, par):
        assert a.grain_map.tobytes() == b.grain_map.tobytes()
        assert a.quaternions.tobytes() == b.quaternions.tobytes()
    with pytest.raises(ValueError, match="seed"):
        list(generate_ves(p, [-1], progress=False))


def test_other_lattices_and_grids():
    ve = generate_ve(
        VEParams(grid=(8, 12, 16), mean_esd=3.0, lattice="hP", texture="custom", texture_eulers_deg=(30, 40, 50)), 7
    )
    assert ve.grid == (8, 12, 16) and ve.lattice == "hP"
    assert np.all(damask.Orientation(ve.quaternions, lattice="hP").in_FZ)
    one = generate_ve(VEParams(grid=8, mean_esd=40.0), 0)  # grain larger than the box
    assert one.n_grains == 1 and np.all(one.grain_map == 0)


def test_morton_order_spatially_coherent(train_ves):
    """Consecutive grain ids are much closer than random pairs (Morton-sorted seeds):
    mean periodic centroid distance of id pairs (i, i+1) < half that of random pairs."""
    ve = train_ves[0]
    idx = np.indices(ve.grid).reshape(3, -1).T
    gm = ve.grain_map.ravel()
    ang = 2 * np.pi * (idx + 0.5) / 32
    cen = (
        np.stack(
            [np.arctan2(np.bincount(gm, np.sin(ang[:, d])), np.bincount(gm, np.cos(ang[:, d]))) for d in range(3)], 1
        )
        * 32
        / (2 * np.pi)
    )

    def dist(a, b):
        d = np.abs(a - b)
        return np.linalg.norm(np.minimum(d, 32 - d), axis=1)

    near = dist(cen[:-1], cen[1:]).mean()
    rnd = dist(cen, cen[np.random.default_rng(0).permutation(len(cen))]).mean()
    assert near < 0.5 * rnd


# ----------------------------------------------------------------------------- tessellation
@pytest.mark.parametrize(
    "grid,aspect,G", [((24, 24, 24), (1, 1, 1), 60), ((16, 20, 12), (2, 1, 0.5), 25), ((8, 8, 8), (1, 1, 1), 3)]
)
def test_power_tessellation_exact(grid, aspect, G):
    """Labels equal a brute-force periodic argmin of the power distance for every
    voxel (ties excluded: the margin of the winner is checked instead of its index)."""
    rng = np.random.default_rng(G)
    seeds = rng.random((G, 3)) * grid
    w = rng.random(G) * 6.0
    lab = power_tessellation(seeds, w, grid, aspect)
    a = normalised_aspect(aspect)
    L = np.asarray(grid) / a
    x = (np.indices(grid).reshape(3, -1).T + 0.5) / a
    rel = x[:, None] - seeds[None] / a
    rel -= L * np.round(rel / L)
    p = (rel**2).sum(-1) - w
    got = p[np.arange(len(x)), lab.ravel()]
    assert np.all(got - p.min(1) <= 1e-5)


# ----------------------------------------------------------------------------- statistics
def test_sampled_sizes_follow_lognormal():
    """Sampled ESDs: mean within 1 % of mean_esd, std of ln ESD within 3 % of sigma,
    cut-offs respected; total sphere volume within one grain of the target."""
    rng = np.random.default_rng(0)
    d = sample_grain_sizes(2.0e6, 5.78, 0.1, 5.0, 5.0, rng)
    assert abs(d.mean() / 5.78 - 1) < 0.01
    assert abs(np.log(d).std() / 0.1 - 1) < 0.03
    lo, hi = esd_bounds(5.78, 0.1, 5.0, 5.0)
    assert d.min() >= lo and d.max() <= hi
    d2 = sample_grain_sizes(1.0e5, 5.0, 0.5, 1.0, 0.5, rng)  # tight cut-offs
    lo, hi = esd_bounds(5.0, 0.5, 1.0, 0.5)
    assert d2.min() >= lo and d2.max() <= hi
    vol = np.pi / 6 * d**3
    assert abs(vol.sum() - 2.0e6) <= vol.max()


def test_measured_esd_distribution(train_ves):
    """Grain ESDs measured from voxel counts of 4 train VEs (32^3, ~1,250 grains):
    mean within 3 % of 5.78, std of ln ESD 0.1 +- 0.03 (voxelisation adds ~0.01-0.02);
    grain count within 10 % of the one implied by the size distribution."""
    esd = np.concatenate([esd_from_volumes(np.bincount(v.grain_map.ravel())) for v in train_ves])
    assert abs(esd.mean() / 5.78 - 1) < 0.03
    assert abs(np.log(esd).std() - 0.1) < 0.03
    mu = np.log(5.78) - 0.005
    expected = 32**3 / (np.pi / 6 * np.exp(3 * mu + 4.5 * 0.01))
    assert abs(np.mean([v.n_grains for v in train_ves]) / expected - 1) < 0.10


def test_measured_esd_large_grains():
    """'large' preset (ESD 12.24) at 32^3, 6 VEs (~200 grains): mean ESD within 5 %."""
    esd = np.concatenate(
        [
            esd_from_volumes(np.bincount(generate_ve(get_preset("large", grid=32), s).grain_map.ravel()))
            for s in range(6)
        ]
    )
    assert abs(esd.mean() / 12.24 - 1) < 0.05


def _shape_ratios(ve):
    """Per grain: sqrt of the second-moment (inertia) tensor's eigenvalue ratios
    largest/middle, direction cosine of the longest axis with x, and
    sqrt(C_xx / C_yy), sqrt(C_xx / C_zz)."""
    grid = np.asarray(ve.grid)
    gm = ve.grain_map.ravel()
    x = np.indices(ve.grid).reshape(3, -1).T + 0.5
    n = ve.n_grains
    # periodic unwrapping relative to a reference voxel of each grain
    ref = np.zeros((n, 3))
    ref[gm[::-1]] = x[::-1]
    d = x - ref[gm]
    d -= grid * np.round(d / grid)
    cnt = np.bincount(gm, minlength=n)
    mean = np.stack([np.bincount(gm, d[:, i], n) for i in range(3)], 1) / cnt[:, None]
    d -= mean[gm]
    Cm = np.stack([[np.bincount(gm, d[:, i] * d[:, j], n) for j in range(3)] for i in range(3)], 0)
    Cm = np.moveaxis(Cm, 2, 0) / cnt[:, None, None]
    ok = cnt >= 20
    lam, vec = np.linalg.eigh(Cm[ok])
    return (
        np.sqrt(lam[:, 2] / lam[:, 1]),
        np.abs(vec[:, 0, 2]),
        np.sqrt(Cm[ok, 0, 0] / Cm[ok, 1, 1]),
        np.sqrt(Cm[ok, 0, 0] / Cm[ok, 2, 2]),
    )


def test_aspect_ratio_elongated():
    """'elongated' (2:1:1, ESD 9.54) at 32^3, 3 VEs: from grain inertia tensors the
    median of sqrt(C_xx/C_yy) and sqrt(C_xx/C_zz) is 2 +- 0.3, the median principal
    ratio 2 +- 0.4, and the longest principal axis lies within 26 deg of x for >= 80 %
    of grains. Equiaxed control (train): both ratios 1 +- 0.12."""
    res = [_shape_ratios(generate_ve(get_preset("elongated", grid=32), s)) for s in range(3)]
    ratio, cosx, rxy, rxz = (np.concatenate(r) for r in zip(*res))
    assert len(ratio) > 50
    assert abs(np.median(rxy) - 2) < 0.3 and abs(np.median(rxz) - 2) < 0.3
    assert abs(np.median(ratio) - 2) < 0.4
    assert (cosx > np.cos(np.radians(26))).mean() >= 0.8
    _, _, exy, exz = _shape_ratios(generate_ve(get_preset("train", grid=32), 0))
    assert abs(np.median(exy) - 1) < 0.12 and abs(np.median(exz) - 1) < 0.12


def test_random_texture_mackenzie(train_ves):
    """Disorientation angles between random pairs of grains of random-texture VEs vs
    the Mackenzie (1958) distribution for cubic symmetry: below 45 deg its CDF is
    24/pi (w - sin w); binned chi^2 over 9 bins of 5 deg plus the > 45 deg bin
    (p > 0.001), mean 40.74 +- 0.5 deg, max <= 62.8 deg. 20,000 grains drawn by the
    generator's texture sampler plus all grains of the train VEs."""
    rng = np.random.default_rng(11)
    q = np.concatenate([sample_orientations(20000, "random", "cF", rng)] + [v.quaternions for v in train_ves])
    perm = rng.permutation(len(q))
    half = len(q) // 2
    a = C.disorientation_angle(q[perm[:half]], q[perm[half : 2 * half]], "cF")
    edges = np.radians(np.arange(0, 50, 5))
    cdf = 24 / np.pi * (edges - np.sin(edges))
    p = np.append(np.diff(cdf), 1 - cdf[-1])
    obs = np.append(np.histogram(a, bins=edges)[0], (a >= edges[-1]).sum())
    exp = p * len(a)
    chi2 = ((obs - exp) ** 2 / exp).sum()
    assert chi2 < 29.6  # chi^2_9 at p = 0.001
    assert abs(np.degrees(a.mean()) - 40.74) < 0.5
    assert np.degrees(a.max()) <= 62.8


@pytest.mark.parametrize("name", ["brass", "copper", "cube", "goss", "s"])
def test_texture_components(name):
    """Component Euler triplets equal their Miller indices (damask from_directions,
    symmetry-aware, < 0.01 deg); textured VEs (32^3, scatter 5 deg) concentrate on the
    component: median disorientation < 2.2 x scatter, 99th percentile < 5 x scatter,
    whereas random texture has median ~ 42 deg."""
    hkl, uvw = TEXTURE_MILLER[name]
    ref = damask.Orientation.from_directions(uvw=uvw, hkl=hkl, lattice="cF").quaternion
    comp = C.eulers_to_quaternions(np.radians(TEXTURE_COMPONENTS[name]))
    assert C.disorientation_angle(ref, comp, "cF", degrees=True) < 0.01
    ve = generate_ve(get_preset(name, grid=32), 1)
    s = get_preset(name).texture_scatter_deg
    a = C.disorientation_angle(ve.quaternions, comp, "cF", degrees=True)
    assert np.median(a) < 2.2 * s and np.percentile(a, 99) < 5 * s
    r = C.disorientation_angle(
        sample_orientations(300, "random", "cF", np.random.default_rng(0)), comp, "cF", degrees=True
    )
    assert np.median(r) > 35


def test_s_component_is_the_textbook_triplet_of_its_miller_indices():
    """S = {-123}<6-34>, written as the textbook (59, 37, 63) (the triplet itself matters
    for hP VEs, where cubic-equivalent triplets are different orientations)."""
    from matflow_vae3d.microstructure.textures import bunge_from_miller

    e = TEXTURE_COMPONENTS["s"]
    np.testing.assert_allclose(e, (58.98, 36.70, 63.43), atol=0.01)
    phi1, phi, phi2 = bunge_from_miller(*TEXTURE_MILLER["s"])  # the cubic equivalent found
    np.testing.assert_allclose((phi1, phi, (phi2 + 90.0) % 360.0), e, atol=1e-9)
    np.testing.assert_allclose(bunge_from_miller((0, 0, 1), (1, 0, 0)), (180.0, 0.0, 0.0), atol=1e-9)


def test_custom_texture_tight_scatter():
    """Mean away from zero (no reflection), scatter 2 deg: disorientation to the mean has
    median 1.0..2.0 x scatter (isotropic 3-D normal: 1.54) and max < 6 x scatter."""
    p = VEParams(grid=16, mean_esd=3.0, texture="custom", texture_eulers_deg=(120, 60, 200), texture_scatter_deg=2.0)
    ve = generate_ve(p, 3)
    a = C.disorientation_angle(ve.quaternions, C.eulers_to_quaternions(np.radians([120, 60, 200])), "cF", degrees=True)
    assert 2.0 < np.median(a) < 4.0 and a.max() < 12.0


def test_random_texture_hexagonal():
    """Random texture, hP (622): a ball of radius tan(w/2) in Rodrigues space stays in
    the fundamental zone up to w = 30 deg, so the disorientation CDF there is
    12/pi (w - sin w); binned chi^2 over 6 bins of 5 deg plus the > 30 deg bin
    (p > 0.001), max <= 93.84 deg. 20,000 grains from the sampler plus one 32^3 VE."""
    rng = np.random.default_rng(12)
    ve = generate_ve(get_preset("train", grid=32, lattice="hP"), 5)
    q = np.concatenate([sample_orientations(20000, "random", "hP", rng), ve.quaternions])
    perm = rng.permutation(len(q))
    half = len(q) // 2
    a = C.disorientation_angle(q[perm[:half]], q[perm[half : 2 * half]], "hP")
    edges = np.radians(np.arange(0, 35, 5))
    cdf = 12 / np.pi * (edges - np.sin(edges))
    p = np.append(np.diff(cdf), 1 - cdf[-1])
    obs = np.append(np.histogram(a, bins=edges)[0], (a >= edges[-1]).sum())
    exp = p * len(a)
    assert ((obs - exp) ** 2 / exp).sum() < 22.46  # chi^2_6 at p = 0.001
    assert np.degrees(a.max()) <= 93.84
