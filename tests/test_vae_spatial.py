"""The periodic spatial-latent VAE: shapes, periodicity (equivariance of the latent,
invariance of the summary under rolls), the symmetry-aware orientation loss,
checkpoints of both architectures, training through the library entry point, and the
fingerprint file's summary."""

import csv
import io

import numpy as np
import pytest
import torch
from vae_helpers import write_set

from matflow_vae3d import crystal
from matflow_vae3d.vae.checkpoint import load_model, save_model
from matflow_vae3d.vae.fingerprints import read_fingerprints, roll_invariant_summary, write_fingerprints
from matflow_vae3d.vae.losses import orientation_term, quaternion_vae_loss, symmetric_cos_half
from matflow_vae3d.vae.models import build_model, model_config
from matflow_vae3d.vae.spatial import SpatialVAE3d, SpatialVAEConfig

TINY = dict(grid=16, widths=(4, 8, 8), layers=(1, 1, 1), latent_channels=2, head_layers=1)


def _quat_image(b, n, lattice="hP", seed=0):
    rng = np.random.default_rng(seed)
    q = crystal.reduce_to_fz(crystal.random_quaternions(b * n**3, rng), lattice).reshape(b, n, n, n, 4)
    return torch.as_tensor(q, dtype=torch.float32).movedim(-1, 1)


def test_shapes_unit_output_and_config():
    m = SpatialVAE3d(SpatialVAEConfig(**TINY)).eval()
    x = _quat_image(3, 16)
    raw, mu, logvar = m(x)
    assert raw.shape == (3, 4, 16, 16, 16) and mu.shape == logvar.shape == (3, 2, 4, 4, 4)
    q = m.output(raw)
    assert torch.allclose(q.norm(dim=1), torch.ones(3, 16, 16, 16), atol=1e-5)
    assert m.fingerprint(x).shape == (3, m.config.latent) == (3, 128)
    assert torch.allclose(m.decode(m.fingerprint(x)), q, atol=1e-5)
    assert SpatialVAEConfig.from_dict(m.config.to_dict()) == m.config
    with pytest.raises(ValueError, match="expects input of shape"):
        m.encode(torch.zeros(1, 3, 16, 16, 16))
    with pytest.raises(ValueError, match="multiple of 4"):
        SpatialVAEConfig(grid=18)
    with pytest.raises(ValueError, match="unknown representation"):
        SpatialVAEConfig(representation="rodrigues")
    arch, cfg = model_config("periodic", 16)
    assert arch == "spatial" and cfg.latent == 1024
    assert model_config("periodic-512", 16)[1].latent == 512
    assert model_config("periodic-256", 16)[1].latent == 256
    assert model_config("resnet18", 64)[0] == "dense"
    with pytest.raises(ValueError, match="has no option hidden"):
        model_config("periodic", 16, hidden=5)
    with pytest.raises(ValueError, match="unknown VAE preset"):
        model_config("unet", 16)


def test_latent_equivariant_to_rolls_by_the_stride_and_summary_invariant():
    torch.manual_seed(0)
    m = SpatialVAE3d(SpatialVAEConfig(**TINY)).eval()
    x = _quat_image(2, 16, seed=1)
    with torch.no_grad():
        mu = m.encode(x)[0]
        for shift in [(4, 0, 0), (0, 8, 4), (12, 4, 8)]:
            mu_r = m.encode(torch.roll(x, shift, dims=(2, 3, 4)))[0]
            cells = tuple(s // 4 for s in shift)
            assert torch.allclose(mu_r, torch.roll(mu, cells, dims=(2, 3, 4)), atol=1e-5)
            s0 = roll_invariant_summary(mu.flatten(1).numpy(), (2, 4, 4, 4))
            s1 = roll_invariant_summary(mu_r.flatten(1).numpy(), (2, 4, 4, 4))
            assert np.allclose(s0, s1, atol=1e-5)
        # a roll by one voxel is not a cell permutation: the latent changes
        mu_1 = m.encode(torch.roll(x, (1, 0, 0), dims=(2, 3, 4)))[0]
        assert not torch.allclose(mu_1, mu, atol=1e-3)
    # the stored summary averages the moments over the rolls {0,2}^3: exact for any
    # roll by a multiple of 2 voxels, close for odd rolls
    from matflow_vae3d.vae.encode import encode_with_summary

    _, s_ref = encode_with_summary(m, x)
    _, s_even = encode_with_summary(m, torch.roll(x, (2, 6, 10), dims=(2, 3, 4)))
    assert np.allclose(s_ref, s_even, atol=1e-5)
    _, s_odd = encode_with_summary(m, torch.roll(x, (1, 3, 0), dims=(2, 3, 4)))
    one = roll_invariant_summary(mu.flatten(1).numpy(), (2, 4, 4, 4))
    one_odd = roll_invariant_summary(
        m.encode(torch.roll(x, (1, 3, 0), dims=(2, 3, 4)))[0].flatten(1).detach().numpy(), (2, 4, 4, 4)
    )
    assert np.abs(s_odd - s_ref).mean() < np.abs(one_odd - one).mean()
    # the decoded statistics are averaged over the same 8 rolls: exactly invariant to
    # even rolls, and an odd roll moves them less than it moves one view's
    from matflow_vae3d.vae.encode import (
        decoded_statistics,
        decoded_statistics_of_views,
        decoded_stats_kind_of,
        encode_views,
    )
    from matflow_vae3d.vae.fingerprints import DECODED_STATS_ROLLS

    views = encode_views(m, x)
    assert len(views) == 8 and torch.equal(views[0], m.encode(x)[0])  # the latent in its layout
    d_ref = decoded_statistics_of_views(m, views, "hP")
    assert decoded_stats_kind_of(m) == DECODED_STATS_ROLLS and d_ref.shape == (2, 79)
    d_even = decoded_statistics_of_views(m, encode_views(m, torch.roll(x, (2, 6, 10), dims=(2, 3, 4))), "hP")
    assert np.allclose(d_ref, d_even, atol=1e-4)
    x_odd = torch.roll(x, (1, 3, 0), dims=(2, 3, 4))
    d_odd = decoded_statistics_of_views(m, encode_views(m, x_odd), "hP")
    one_d, one_d_odd = decoded_statistics(m, views[0], "hP"), decoded_statistics(m, encode_views(m, x_odd)[0], "hP")
    assert np.abs(d_odd - d_ref).mean() <= np.abs(one_d_odd - one_d).mean()
    s = roll_invariant_summary(mu.flatten(1).numpy(), (2, 4, 4, 4))
    assert s.shape == (2, 2 + 3 + 2)
    # the moments are what they say: channel means, second moments, lag-1 products
    z = mu.flatten(2).numpy()
    assert np.allclose(s[:, :2], z.mean(2), atol=1e-6)
    assert np.allclose(s[:, 2], (z[:, 0] ** 2).mean(1), atol=1e-6)
    assert np.allclose(s[:, 3], (z[:, 0] * z[:, 1]).mean(1), atol=1e-6)
    dense = np.arange(6.0).reshape(2, 3)
    assert np.array_equal(roll_invariant_summary(dense, (3,)), dense.astype(np.float32))
    with pytest.raises(ValueError, match="do not match latent shape"):
        roll_invariant_summary(dense, (2, 4, 4, 4))


@pytest.mark.parametrize("lattice", ["hP", "cF"])
def test_orientation_loss_is_symmetry_aware_and_is_the_disorientation(lattice):
    q = _quat_image(2, 4, lattice, seed=2)
    # any symmetric equivalent, either sign: zero loss
    ops = crystal.symmetry_operators(lattice)
    qv = q.movedim(1, -1)
    k = torch.randint(0, len(ops), qv.shape[:-1], generator=torch.Generator().manual_seed(0))
    eq = crystal.torch_quaternion_multiply(torch.as_tensor(ops, dtype=torch.float32)[k], qv)
    sign = torch.where(torch.rand(qv.shape[:-1] + (1,)) < 0.5, -1.0, 1.0)
    q_eq = (eq * sign).movedim(-1, 1)
    assert float(orientation_term(q_eq, q, lattice, "squared")) < 1e-6
    assert float(orientation_term(q_eq, q, lattice, "angle")) < 2e-3  # sqrt(eps) floor
    # against random orientations: cos(θ/2) of the disorientation angle
    p = _quat_image(2, 4, lattice, seed=3)
    c = symmetric_cos_half(p, q, lattice)
    ang = crystal.torch_disorientation_angle(p.movedim(1, -1), q.movedim(1, -1), lattice)
    assert torch.allclose(c, torch.cos(ang / 2), atol=1e-5)
    t = quaternion_vae_loss(p, q, torch.zeros(2, 3), torch.zeros(2, 3), lattice, kl_weight=0.5)
    assert torch.allclose(t["loss"], t["orientation"] + 0.5 * t["kl"]) and float(t["kl"]) == 0.0
    with pytest.raises(ValueError, match="unknown orientation loss"):
        orientation_term(p, q, lattice, "l1")


@pytest.mark.parametrize("lattice", ["hP", "cF"])
def test_fz_loss_is_the_papers_metric_and_pulls_to_the_fz_representative(lattice):
    """'angle+fz' = 'angle' + the paper's 1 - |FZ(q̂)·FZ(q)|: zero for the same FZ
    representative (either sign), large for a near-match across a face of the zone."""
    from matflow_vae3d.vae.encode import misorientation
    from matflow_vae3d.vae.losses import fz_term

    q = _quat_image(2, 4, lattice, seed=4)
    p = _quat_image(2, 4, lattice, seed=5)
    fz = fz_term(p, q, lattice)
    assert torch.isclose(fz, misorientation(q, p, lattice, "quaternion")["quat"].mean(), atol=1e-6)
    both = orientation_term(p, q, lattice, "angle+fz")
    assert torch.isclose(both, orientation_term(p, q, lattice, "angle") + fz, atol=1e-6)
    assert float(fz_term(-q, q, lattice)) < 1e-6
    # q̂ 1° across the zone's face about c from q (2° apart): the symmetry-aware loss is
    # small, the paper's metric compares representatives ~ 2 x face angle apart
    face = {"hP": 30.0, "cF": 45.0}[lattice]

    def about_z(deg):
        h = np.radians(np.full((1, 4, 1, 1, 1), deg, dtype=np.float32)) / 2
        return torch.as_tensor(np.concatenate([np.cos(h[:, :1]), 0 * h[:, :1], 0 * h[:, :1], np.sin(h[:, :1])], 1))

    q_in, q_hat = about_z(face - 1.0), about_z(face + 1.0)
    assert float(orientation_term(q_hat, q_in, lattice, "angle")) < 0.02
    assert np.isclose(float(fz_term(q_hat, q_in, lattice)), 1 - np.cos(np.radians(face - 1.0)), atol=1e-4)
    x = q_hat.clone().requires_grad_()
    orientation_term(x, q_in, lattice, "angle+fz").backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


def test_spatial_model_learns_two_ves():
    """A few hundred steps on two VEs: the symmetry-aware error falls far below the
    random-orientation level (~ 60° for hP)."""
    torch.manual_seed(0)
    from vae_helpers import voronoi_ve

    rng = np.random.default_rng(5)
    ves = [voronoi_ve(8, 4, rng) for _ in range(2)]
    x = torch.stack([torch.as_tensor(v.quaternions[v.grain_map], dtype=torch.float32).movedim(-1, 0) for v in ves])
    m = SpatialVAE3d(SpatialVAEConfig(grid=8, widths=(8, 16, 16), latent_channels=4, head_layers=1))
    opt = torch.optim.AdamW(m.parameters(), 3e-3)
    for _ in range(150):
        raw, mu, lv = m(x)
        loss = quaternion_vae_loss(m.output(raw), x, mu, lv, "hP", kl_weight=1e-4)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    from matflow_vae3d.vae.encode import misorientation

    with torch.no_grad():
        err = misorientation(x, m.decode(m.fingerprint(x)), "hP", "quaternion")
    assert float(err["deg"].mean()) < 15.0, err


def test_checkpoints_of_both_architectures(tmp_path):
    torch.manual_seed(0)
    m = SpatialVAE3d(SpatialVAEConfig(**TINY)).eval()
    p = save_model(tmp_path / "s.pt", m, "cF", {"note": "x"})
    m2, meta = load_model(p)
    assert isinstance(m2, SpatialVAE3d) and meta["architecture"] == "spatial"
    assert meta["representation"] == "quaternion" and meta["latent"] == 128 and meta["lattice"] == "cF"
    x = _quat_image(1, 16, "cF")
    assert torch.equal(m.fingerprint(x), m2.fingerprint(x))
    # a format-version-1 file (before architectures had names) is the paper's dense model
    dense = build_model("dense", model_config("small", 16, widths=(2, 2, 2, 2), hidden=4, latent=3)[1])
    rec = torch.load(save_model(tmp_path / "d.pt", dense, "hP"), weights_only=True)
    rec["format_version"] = 1
    del rec["architecture"], rec["representation"]
    torch.save(rec, tmp_path / "v1.pt")
    m3, meta3 = load_model(tmp_path / "v1.pt")
    assert meta3["architecture"] == "dense" and meta3["representation"] == "euler" and meta3["latent"] == 3
    rec["format_version"] = 99
    torch.save(rec, tmp_path / "v99.pt")
    with pytest.raises(ValueError, match="format version 99.*upgrade"):
        load_model(tmp_path / "v99.pt")
    rec = torch.load(p, weights_only=True)
    rec["architecture"] = "transformer"
    torch.save(rec, tmp_path / "unk.pt")
    with pytest.raises(ValueError, match="unknown VAE architecture 'transformer'"):
        load_model(tmp_path / "unk.pt")


def test_train_vae_spatial_resume_fingerprints_and_summary(tmp_path):
    from matflow_vae3d.surrogate.table import read_fingerprints as surrogate_read
    from matflow_vae3d.vae.encode import evaluate_dataset, fingerprint_dataset
    from matflow_vae3d.vae.train import RunExists, train_vae

    train = write_set(tmp_path / "t.h5", 8, seed=0)
    val = write_set(tmp_path / "v.h5", 4, seed=1)
    kw = dict(
        val=val,
        preset="periodic",
        overrides=dict(widths=(4, 8, 8), latent_channels=2),
        batch_size=4,
        accelerator="cpu",
        progress=False,
        warmup_steps=2,
    )
    rec = train_vae(train, tmp_path / "run", epochs=1, **kw)
    assert rec["architecture"] == "spatial" and rec["roll"] and rec["optimizer"] == "adamw"
    assert rec["total_steps"] == 2 and rec["n_train"] == 8
    with pytest.raises(RunExists, match="pass --resume"):
        train_vae(train, tmp_path / "run", epochs=2, **kw)
    wall1 = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")[1]["training"]["train_wall_s"]
    rec = train_vae(train, tmp_path / "run", epochs=2, resume=True, **kw)
    assert 0 < wall1 < rec["train_wall_s"]  # summed over the two runs
    hist = (tmp_path / "run" / "history.csv").read_text().strip().splitlines()
    assert len(hist) == 3 and "val_orientation" in hist[0]
    # total_wall_s: summed over the resumed runs, the record's value at each epoch's end
    rows = list(csv.DictReader(io.StringIO("\n".join(hist))))
    totals = [float(r["total_wall_s"]) for r in rows]
    assert abs(totals[0] - wall1) < 1.0 and totals[0] < totals[1] and abs(totals[1] - rec["train_wall_s"]) < 1.0
    model, meta = load_model(tmp_path / "run" / "model.pt")
    ev = evaluate_dataset(model, meta, val, progress=False)
    assert ev["n"] == 4 and 0.0 <= ev["within15_mean"] <= 1.0 and ev["deg_mean"] > 0
    fp = tmp_path / "fp.h5"
    fingerprint_dataset(model, meta, train, fp, progress=False)
    d = read_fingerprints(fp)
    assert d["mu"].shape == (8, 128) and d["latent_shape"] == (2, 4, 4, 4) and d["summary"].shape == (8, 7)
    assert d["summary_kind"] == "moments-v1, mean over rolls {0,2}^3"
    # the surrogate learns from the roll-invariant summary
    s = surrogate_read(fp)
    assert s.mu.shape == (8, 7) and s.latent_dim == 7 and s.model_sha256 == meta["sha256"]
    # a version-1 file (no summary) reads with summary = mu
    import h5py

    write_fingerprints(tmp_path / "v1.h5", ["a", "b"], np.ones((2, 3)), "h", "hP", 16, "src")
    with h5py.File(tmp_path / "v1.h5", "a") as f:
        del f["summary"]
        f.attrs["format_version"] = 1
    assert np.array_equal(read_fingerprints(tmp_path / "v1.h5")["summary"], np.ones((2, 3), np.float32))


def test_train_vae_init_from_starts_a_new_run_from_a_models_weights(tmp_path):
    """--init-from: a new run (fresh schedule) starts from another VAE's weights; the
    architecture, config and lattice must match, and the source stays on record."""
    import torch

    from matflow_vae3d.vae.train import train_vae

    train = write_set(tmp_path / "t.h5", 8, seed=0)
    kw = dict(
        preset="periodic",
        overrides=dict(widths=(4, 4, 4), latent_channels=1),
        batch_size=4,
        accelerator="cpu",
        progress=False,
        warmup_steps=0,
    )
    train_vae(train, tmp_path / "a", epochs=1, **kw)
    src, src_meta = load_model(tmp_path / "a" / "model.pt")
    fresh = train_vae(train, tmp_path / "b", epochs=1, lr=1e-12, seed=5, **kw)
    rec = train_vae(train, tmp_path / "c", epochs=1, lr=1e-12, seed=5, init_from=tmp_path / "a" / "model.pt", **kw)
    assert rec["init_from"]["sha256"] == src_meta["sha256"] and rec["init_from"]["n_train"] == 8
    assert "init_from" not in fresh
    tuned = dict(load_model(tmp_path / "c" / "model.pt")[0].named_parameters())
    other = dict(load_model(tmp_path / "b" / "model.pt")[0].named_parameters())
    for k, v in src.named_parameters():  # lr ~ 0: the weights (not the norm statistics) are the source's
        assert torch.allclose(tuned[k], v, atol=1e-6), k
    assert any(not torch.allclose(other[k], v) for k, v in src.named_parameters())
    with pytest.raises(ValueError, match="cannot start"):  # another config
        train_vae(
            train,
            tmp_path / "d",
            epochs=1,
            init_from=tmp_path / "a" / "model.pt",
            **{**kw, "overrides": dict(widths=(4, 4, 4), latent_channels=2)},
        )


def test_spatial_model_on_euler_angles_trains_with_the_paper_loss(tmp_path):
    """--representation euler: the spatial network on normalised Euler angles with
    BCE + spectral loss (the paper's representation, for comparison)."""
    from matflow_vae3d.vae.encode import evaluate_dataset
    from matflow_vae3d.vae.train import train_vae

    train = write_set(tmp_path / "t.h5", 4, seed=0)
    rec = train_vae(
        train,
        tmp_path / "run",
        preset="periodic",
        epochs=1,
        batch_size=4,
        accelerator="cpu",
        progress=False,
        overrides=dict(widths=(4, 4, 4), latent_channels=1, representation="euler"),
    )
    assert rec["config"]["representation"] == "euler"
    assert "train_bce" in (tmp_path / "run" / "history.csv").read_text().splitlines()[0]
    model, meta = load_model(tmp_path / "run" / "model.pt")
    assert meta["representation"] == "euler" and model.config.in_channels == 3
    ev = evaluate_dataset(model, meta, train, progress=False)
    assert ev["n"] == 4 and 0 < ev["deg_mean"] < 95
