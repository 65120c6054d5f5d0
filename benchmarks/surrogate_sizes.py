"""The shipped 16³ Mg surrogate on CP sets of other VE sizes (docs/results.md "Across VE
sizes"), next to each set's own leave-one-out mean curve, the training mean curve (the
16³ reference set's) and a surrogate on the true VE's orientation statistics (x, y, z;
the features the decoded statistics are made of), trained on the same 16³ reference set.

    python benchmarks/surrogate_sizes.py --work W \\
        --set mg32=ref32/mg32_ves.h5:ref32/mg32_cp.h5 --set mg64=coarse/mg64-train_ves.h5:coarse/mg64-train_k1.h5

With --train-with NAME: also a surrogate trained on the 16³ reference set plus NAME's
training split (same recipe as the shipped one's CLI), scored on NAME's held-out VEs next
to the shipped surrogate on the same VEs.

Per set: VEs, mean grains, the std of sigma_xx(1 %) between its VEs, and the curve MAE
(MPa, mean over VEs and the 20 loaded states) and sigma_xx(1 %) MAE of each predictor,
with the share of curves inside the surrogate's +-2 sigma band. Only converged CP rows
count; CP rows are joined to VEs by id. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REF = ROOT / "matflow_vae3d" / "data" / "reference"


def curves(cp_file, ids=None):
    """(ids, sigma_xx (n, states) MPa) of the converged rows (in ``ids`` order if given)."""
    from matflow_vae3d.cp.results import read_results

    r = read_results(cp_file, fields=("ve_id", "status", "sigma"))
    ok = r["status"] == "converged"
    got = dict(zip(np.asarray(r["ve_id"])[ok], r["sigma"][ok, :, 0, 0] / 1e6))
    keep = [v for v in (ids if ids is not None else got) if v in got]
    return keep, np.stack([got[v] for v in keep])


def subset(ves: Path, keep, out: Path) -> Path:
    """A VE dataset with the VEs ``keep`` of ``ves`` (the converged ones)."""
    from matflow_vae3d.datasets import VEDataset, write_ves

    if out.exists():
        out.unlink()
    with VEDataset(str(ves)) as ds:
        write_ves(out, (ds[ds.index_of(v)] for v in keep), progress=False)
    return out


def train(ckpt: Path, fingerprints, stresses, test_fraction: float) -> None:
    """`vae3d train-surrogate` with this benchmark's recipe (5 members, val 15 %, up to
    3,000 epochs, patience 200, one thread)."""
    from matflow_vae3d.cli import cli

    args = ["train-surrogate", "-o", ckpt, "--ensemble", 5, "--val-fraction", 0.15, "--test-fraction", test_fraction]
    args += ["--epochs", 3000, "--patience", 200, "--threads", 1, "--no-progress"]
    for f in fingerprints:
        args += ["-f", f]
    for c in stresses:
        args += ["-s", c]
    cli.main([str(a) for a in args], standalone_mode=False)


def orientation_surrogate(work: Path):
    """A 5-member surrogate on the true VE's orientation statistics (x, y, z) of the 16³
    reference set (cached in work)."""
    from matflow_vae3d.surrogate.baselines import write_feature_file

    feats, ckpt = work / "ref16_orient_xyz.h5", work / "orient_xyz.pt"
    if not feats.exists():
        write_feature_file(REF / "mg16_s301_ves.h5", feats, progress=False, axes="xyz")
    if not ckpt.exists():
        train(ckpt, [feats], [REF / "mg16_s301_cp.h5"], test_fraction=0.2)
    return ckpt


def mixed_grid_surrogate(work: Path, name: str, shipped) -> dict:
    """Train on the 16³ reference fingerprints + ``name``'s (split by VE-id hash: val 15 %,
    test 25 %), score on ``name``'s held-out VEs, next to the shipped surrogate there."""
    from matflow_vae3d.cli import cli
    from matflow_vae3d.microstructure.symmetry import base_id
    from matflow_vae3d.surrogate.ensemble import Surrogate
    from matflow_vae3d.surrogate.table import read_fingerprints

    fp16 = work / "ref16_fp.h5"
    if not fp16.exists():
        cli.main(
            [
                "fingerprint",
                "--model",
                "pretrained",
                "--data",
                str(REF / "mg16_s301_ves.h5"),
                "--out",
                str(fp16),
                "--no-progress",
                "--threads",
                "1",
            ],
            standalone_mode=False,
        )
    cp_set = Path(json.loads((work / "sets.json").read_text())[name])
    ckpt = work / f"mixed_{name}.pt"
    if not ckpt.exists():
        train(ckpt, [fp16, work / f"{name}_fp.h5"], [REF / "mg16_s301_cp.h5", cp_set], test_fraction=0.25)
    mixed = Surrogate.load(ckpt)
    held = {base_id(v) for v in mixed.meta["test_ids"]}
    fp = read_fingerprints(work / f"{name}_fp.h5", mixed.inputs)
    keep = [i for i, v in enumerate(fp.ve_id) if v in held]
    ids, y = curves(cp_set, [fp.ve_id[i] for i in keep])
    X = fp.mu[keep]
    (pm, sm), (ps, ss) = mixed.predict(X)[:2], shipped.predict(X)[:2]
    row = {"set": f"{name} held out", "n": len(ids), "mixed": mae(pm, y), "shipped": mae(ps, y)}
    row |= {"mixed_coverage": coverage(pm, sm, y), "shipped_coverage": coverage(ps, ss, y)}
    print(
        f"surrogate on 16³ + {name}'s training split, on {len(ids)} held-out {name} VEs: curve MAE "
        f"{row['mixed'][0]:.2f} MPa (sigma_xx(1 %) {row['mixed'][1]:.2f}, ±2σ coverage "
        f"{100 * row['mixed_coverage']:.0f} %); the shipped 16³ surrogate on the same VEs: {row['shipped'][0]:.2f} "
        f"({row['shipped'][1]:.2f}, {100 * row['shipped_coverage']:.0f} %)"
    )
    return row


def coverage(mean, std, y) -> float:
    """Share of the loaded states of the curves ``y`` (n, states) inside mean +- 2 std."""
    return float(np.mean(np.abs(mean[:, 1:] - y[:, 1:]) <= 2 * std[:, 1:]))


def mae(pred, y) -> tuple[float, float]:
    """(curve MAE over the loaded states, sigma_xx(1 %) MAE) in MPa of ``pred`` against ``y`` (n, states)."""
    pred = np.broadcast_to(pred, y.shape)
    return float(np.abs(pred[:, 1:] - y[:, 1:]).mean()), float(np.abs(pred[:, -1] - y[:, -1]).mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VES:CP")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--train-with", metavar="NAME", help="train on 16³ + this set's train split (see above)")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    import torch

    from matflow_vae3d.surrogate.baselines import write_feature_file
    from matflow_vae3d.surrogate.ensemble import Surrogate
    from matflow_vae3d.surrogate.from_ves import predict_ves, pretrained_surrogate_path
    from matflow_vae3d.surrogate.table import read_fingerprints

    torch.set_num_threads(1)
    shipped = Surrogate.load(pretrained_surrogate_path("Mg"))
    _, ref = curves(REF / "mg16_s301_cp.h5")
    train_mean = ref.mean(0)
    orient = Surrogate.load(orientation_surrogate(a.work))
    rows = []
    for spec in a.set:
        name, files = spec.split("=", 1)
        ves, cp = (Path(p) for p in files.split(":"))
        known = json.loads((a.work / "sets.json").read_text()) if (a.work / "sets.json").exists() else {}
        (a.work / "sets.json").write_text(json.dumps({**known, name: str(cp)}))
        ids, y = curves(cp)
        data = subset(ves, ids, a.work / f"{name}_ves.h5")
        p = predict_ves(shipped, data, fingerprints_out=a.work / f"{name}_fp.h5")
        assert list(p["ve_id"]) == list(ids)
        feat = write_feature_file(data, a.work / f"{name}_orient.h5", progress=False, overwrite=True, axes="xyz")
        po = orient.predict(read_fingerprints(feat, orient.inputs).mu)[0]
        n = len(ids)
        loo = (y.sum(0, keepdims=True) - y) / max(n - 1, 1)
        from matflow_vae3d.datasets import VEDataset

        with VEDataset(str(data)) as ds:
            grains = float(np.mean(ds.n_grains))
            grid = "x".join(map(str, ds.grid))

        inside = coverage(p["mean"], p["std"], y)
        row = dict(
            set=name,
            grid=grid,
            n=n,
            grains=grains,
            sxx_mean=float(y[:, -1].mean()),
            sxx_std=float(y[:, -1].std(ddof=1)) if n > 1 else float("nan"),
            shipped=mae(p["mean"], y),
            coverage=inside,
            orientation=mae(po, y),
            loo_mean=mae(loo, y) if n > 1 else (float("nan"),) * 2,
            train_mean=mae(train_mean, y),
            fingerprint_s_per_ve=p["fingerprint_s"] / n,
        )
        rows.append(row)
    print(
        "| set | grid | VEs | grains | σxx(1 %) mean ± std (MPa) | shipped surrogate: curve MAE · σxx(1 %) MAE "
        "· ±2σ coverage | true VE's orientation statistics | set's own leave-one-out mean curve "
        "| 16³ training mean curve |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['set']} | {r['grid']} | {r['n']} | {r['grains']:.0f} | {r['sxx_mean']:.2f} ± {r['sxx_std']:.2f} "
            f"| **{r['shipped'][0]:.2f} · {r['shipped'][1]:.2f}** · {100 * r['coverage']:.0f} % "
            f"| {r['orientation'][0]:.2f} · {r['orientation'][1]:.2f} "
            f"| {r['loo_mean'][0]:.2f} · {r['loo_mean'][1]:.2f} "
            f"| {r['train_mean'][0]:.2f} · {r['train_mean'][1]:.2f} |"
        )
    if a.train_with:
        rows.append(mixed_grid_surrogate(a.work, a.train_with, shipped))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
