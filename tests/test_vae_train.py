"""VAE training with Lightning on real VE datasets: resume after a kill ends in the
same state as an uninterrupted run; checkpoints are weights_only-loadable and carry
lattice + grid; encoding VEs of another lattice/grid is refused."""

import numpy as np
import pytest
import torch
from vae_helpers import write_set

from matflow_vae3d.vae.checkpoint import check_compatible, load_model, save_model
from matflow_vae3d.vae.network import ResNetVAE3d, VAEConfig

CFG = dict(layers=[1, 1, 1, 1], widths=[4, 8, 8, 16], grid=16, hidden=16, latent=6)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("vae_sets")
    return {
        "train": write_set(d / "train.h5", 12, seed=0),
        "val": write_set(d / "val.h5", 4, seed=1),
        "cubic": write_set(d / "cubic.h5", 2, seed=2, lattice="cF"),
        "g32": write_set(d / "g32.h5", 1, grid=32, n_grains=20, seed=3),
    }


class Kill(Exception):
    pass


def _fit(sets, out, epochs, resume=False, kill_at_step=None):
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from matflow_vae3d.vae.lightning import VAEModule, VEDataModule, make_trainer

    class Killer(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if kill_at_step is not None and trainer.global_step == kill_at_step:
                raise Kill

    L.seed_everything(0, verbose=False)
    module = VAEModule(CFG, "hP", lr=1e-3, kl_weight=1e-3, seed=0)
    data = VEDataModule(sets["train"], sets["val"], batch_size=4, seed=0)
    trainer = make_trainer(out, epochs, progress=False)
    trainer.callbacks.append(Killer())
    ckpt = str(out / "checkpoints" / "last.ckpt") if resume else None
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    return module


def test_resume_after_kill_matches_uninterrupted(sets, tmp_path):
    full = _fit(sets, tmp_path / "full", 2)
    with pytest.raises(Kill):  # killed in the middle of epoch 2 (3 steps per epoch)
        _fit(sets, tmp_path / "killed", 2, kill_at_step=4)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert last.is_file() and not list(last.parent.glob("*.tmp"))
    resumed = _fit(sets, tmp_path / "killed", 2, resume=True)
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=0, atol=1e-6), k
    # one CSV row per epoch, none duplicated by the re-run epoch
    rows = (tmp_path / "killed" / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    assert rows[0].startswith("epoch,step,wall_s,train_loss,train_bce,train_spectral,train_kl")
    assert (tmp_path / "killed" / "loss_curve.png").stat().st_size > 1000
    # the Lightning checkpoint loads with weights_only and carries lattice + grid
    raw = torch.load(last, weights_only=True)
    assert raw["vae3d"]["lattice"] == "hP" and raw["vae3d"]["grid"] == 16
    model, meta = load_model(last)
    assert meta["config"] == VAEConfig(**CFG).to_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, b["net." + k])


def test_model_file_round_trip_and_refusals(sets, tmp_path):
    m = ResNetVAE3d(VAEConfig(**CFG))
    p = save_model(tmp_path / "m.pt", m, "hexagonal", {"note": "test", "epochs": 3})
    raw = torch.load(p, weights_only=True)
    assert raw["lattice"] == "hP" and raw["config"]["widths"] == [4, 8, 8, 16]
    m2, meta = load_model(p)
    x = torch.rand(2, 3, 16, 16, 16)
    m.eval()
    assert torch.equal(m.encode(x)[0], m2.encode(x)[0])
    assert meta["training"] == {"note": "test", "epochs": 3} and len(meta["sha256"]) == 64
    check_compatible(meta, "hP", (16, 16, 16))
    with pytest.raises(ValueError, match="trained on crystal structure 'hP'.*'cF'"):
        check_compatible(meta, "cF", 16)
    with pytest.raises(ValueError, match="dense .*only its training grid 16x16x16.*32x32x32"):
        check_compatible(meta, "hP", (32, 32, 32))
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read VAE checkpoint"):
        load_model(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a matflow-vae3d VAE checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_fingerprint_equals_direct_encoding(sets, tmp_path):
    from matflow_vae3d.datasets import VEDataset, euler_image
    from matflow_vae3d.vae.encode import fingerprint_dataset
    from matflow_vae3d.vae.fingerprints import read_fingerprints

    torch.manual_seed(0)
    m = ResNetVAE3d(VAEConfig(**CFG))
    p = save_model(tmp_path / "m.pt", m, "hP")
    model, meta = load_model(p)
    out = tmp_path / "fp.h5"
    fingerprint_dataset(model, meta, sets["val"], out, batch_size=3, progress=False)
    fp = read_fingerprints(out)
    ds = VEDataset(sets["val"])
    assert fp["ve_id"] == ds.ve_ids and fp["mu"].shape == (4, 6) and fp["mu"].dtype == np.float32
    assert fp["model_sha256"] == meta["sha256"] and fp["lattice"] == "hP" and fp["latent_dim"] == 6
    assert list(fp["grid"]) == [16, 16, 16] and fp["source"].endswith("val.h5")
    x = torch.as_tensor(np.stack([euler_image(ds[i]) for i in range(4)]), dtype=torch.float32)
    mu = model.eval().encode(x)[0].detach().numpy()
    assert np.allclose(fp["mu"], mu, atol=1e-5)
    with pytest.raises(ValueError, match="'cF'"):
        fingerprint_dataset(model, meta, sets["cubic"], tmp_path / "x.h5", progress=False)
    with pytest.raises(ValueError, match="32x32x32"):
        fingerprint_dataset(model, meta, sets["g32"], tmp_path / "x.h5", progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_ddp_two_processes_cpu(sets, tmp_path):
    """Lightning DDP (gloo, 2 CPU processes) through the CLI: finishes (no collective
    called on one rank only), one history row per epoch, checkpoints written once."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "matflow_vae3d.cli",
        "train-vae",
        "--train",
        str(sets["train"]),
        "--val",
        str(sets["val"]),
        "--preset",
        "small",
        "--widths",
        "4,8,8,16",
        "--hidden",
        "16",
        "--latent",
        "6",
        "--epochs",
        "1",
        "--batch-size",
        "3",
        "--out",
        str(out),
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--threads",
        "1",
        "--no-progress",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("model ->") == 1
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[:2] for r in rows[1:]] == [["0", "2"]]  # 12 VEs / (2 ranks × batch 3)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    model, meta = load_model(out / "model.pt")
    assert meta["training"]["devices"] == 2
