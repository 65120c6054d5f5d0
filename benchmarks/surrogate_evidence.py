"""Surrogate evidence on a CP dataset (issue 12): models vs baselines on one fixed
held-out split, a learning curve, and active vs random sampling.

    python benchmarks/surrogate_evidence.py --ves mg_ves.h5 --stresses mg_cp.h5 --work DIR

Inputs: a VE dataset and its CP results (``scripts/make_cp_dataset.sh``). Made in
DIR when missing: ``fp.h5`` (fingerprints of the VAE, default the shipped one for the
dataset's lattice), ``orient.h5`` (orientation statistics, surrogate/baselines.py:
loading axis x) and ``orient_xyz.h5`` (the same for the sample axes x, y and z: the
features the decoded statistics are made of, but of the true VE).
Written: ``evidence.json`` (every number), ``table.md`` (the results table),
``<model>/`` (Figure-9 plots of each model), ``learning_curve.png``,
``active_sampling.png``.

Models, all on the same split (split_by_id, seed 0; val 15 %, test 20 % of the VEs):
the paper's MLP (one member) on the fingerprint summary as it is (the paper's input)
and standardised, a 5-member ensemble on the summary, on the fingerprint's decoded
statistics (orientation statistics of the VAE's reconstruction from mu; the product's
default input) and on both; the same ensemble on orientation statistics of the true VE
(loading axis x; and x, y, z, the decoded statistics' own features) and on summary +
orientation statistics; the training mean curve. The learning curve
and active sampling use the decoded input (vs orientation statistics).
Every network is trained on one thread (the load is stated in docs/results.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matflow_vae3d.surrogate.acquisition import acquisition_scores  # noqa: E402
from matflow_vae3d.surrogate.evaluate import evaluate, regression_metrics  # noqa: E402
from matflow_vae3d.surrogate.lightning import TrainConfig, train_surrogate  # noqa: E402
from matflow_vae3d.surrogate.table import Fingerprints, build_table, read_fingerprints, read_stresses  # noqa: E402

VAL, TEST = 0.15, 0.20


def fingerprints(ves: Path, work: Path, vae: str) -> Path:
    from matflow_vae3d.vae import dataset_lattice, pretrained_path
    from matflow_vae3d.vae.checkpoint import load_model
    from matflow_vae3d.vae.encode import fingerprint_dataset

    out = work / "fp.h5"
    if not out.exists():
        path = pretrained_path(dataset_lattice(ves)) if vae == "pretrained" else vae
        model, meta = load_model(path)
        t0 = time.perf_counter()
        res = fingerprint_dataset(model, meta, ves, out, batch_size=32, progress=False)
        print(f"fingerprinted {res['n']} VEs in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return out


def orientation_stats(ves: Path, work: Path, axes: str = "x") -> Path:
    from matflow_vae3d.surrogate.baselines import write_feature_file

    out = work / ("orient.h5" if axes == "x" else f"orient_{axes}.h5")
    if not out.exists():
        write_feature_file(ves, out, progress=False, axes=axes)
    return out


def combined(a: Fingerprints, b: Fingerprints) -> Fingerprints:
    """Both feature sets side by side (rows matched by VE id)."""
    idx = {v: k for k, v in enumerate(b.ve_id.tolist())}
    keep = [k for k, v in enumerate(a.ve_id.tolist()) if v in idx]
    other = np.stack([b.mu[idx[a.ve_id[k]]] for k in keep])
    sha = hashlib.sha256((a.model_sha256 + "+" + b.model_sha256).encode()).hexdigest()
    mu = np.concatenate([a.mu[keep], other], axis=1)
    return Fingerprints(a.ve_id[keep], mu, sha, mu.shape[1], a.lattice, "fingerprint+orientation")


def with_train(table, train_rows):
    """The table with only ``train_rows`` left in 'train' (the rest of the train
    pool becomes 'pool'; val and test unchanged)."""
    split = table.split.copy()
    pool = table.rows("train")
    split[pool] = "pool"
    split[np.asarray(train_rows, dtype=int)] = "train"
    return dataclasses.replace(table, split=split)


def fit(table, members: int, seed: int = 0, epochs: int = 10000, patience: int = 200, standardize=False):
    cfg = TrainConfig(
        n_members=members, seed=seed, max_epochs=epochs, patience=patience, threads=1, standardize_inputs=standardize
    )
    return train_surrogate(table, cfg, progress=False)


def test_mae(sur, table) -> float:
    return evaluate(sur, table, split="test")["metrics"]["mae_mpa_mean"]


def row(name, res, n_train):
    m = res["metrics"]
    c = res.get("calibration", {})
    cov = c.get("coverage_2sigma_calibrated")
    return {
        "model": name,
        "n_train": n_train,
        "mae": m["mae_mpa_mean"],
        "mae_sd": m["mae_mpa_sd"],
        "rel": m["rel_pct_mean"],
        "rel_sd": m["rel_pct_sd_all"],
        "r2": m["r2"],
        "rmse": m["rmse_mpa"],
        "coverage": cov,
        "calibration_scale": c.get("calibration_scale"),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ves", type=Path, required=True)
    ap.add_argument("--stresses", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--vae", default="pretrained")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--sizes", default="100,250,500,1000,all", help="learning-curve training sizes")
    ap.add_argument("--al-start", type=int, default=100)
    ap.add_argument("--al-batch", type=int, default=100)
    ap.add_argument("--al-rounds", type=int, default=5)
    ap.add_argument("--al-seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10000)
    ap.add_argument("--patience", type=int, default=200)
    ap.add_argument("--only", default="table,curve,active")
    ap.add_argument(
        "--test-originals",
        action="store_true",
        help="evaluate on held-out originals only: rotated copies (vae3d rotate-cp) of held-out VEs leave the test set",
    )
    args = ap.parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    t_all = time.perf_counter()

    st = read_stresses(args.stresses)
    fp_path = fingerprints(args.ves, work, args.vae)
    fp = read_fingerprints(fp_path)
    dec = read_fingerprints(fp_path, "decoded")
    both = read_fingerprints(fp_path, "summary+decoded")
    ori = read_fingerprints(orientation_stats(args.ves, work))
    ori_xyz = read_fingerprints(orientation_stats(args.ves, work, axes="xyz"))
    tables = {
        "fingerprint": build_table(fp, st, val_fraction=VAL, test_fraction=TEST),
        "decoded": build_table(dec, st, val_fraction=VAL, test_fraction=TEST),
        "fingerprint+decoded": build_table(both, st, val_fraction=VAL, test_fraction=TEST),
        "orientation": build_table(ori, st, val_fraction=VAL, test_fraction=TEST),
        "orientation-xyz": build_table(ori_xyz, st, val_fraction=VAL, test_fraction=TEST),
        "fingerprint+orientation": build_table(combined(fp, ori), st, val_fraction=VAL, test_fraction=TEST),
    }
    if args.test_originals:
        from matflow_vae3d.microstructure.symmetry import rotation_index

        for key, t in tables.items():
            copy = np.array([rotation_index(v) > 0 for v in t.ve_id])
            tables[key] = dataclasses.replace(t, split=np.where(copy & (t.split == "test"), "unused", t.split))
    tab = tables["fingerprint"]
    for t in tables.values():  # the same VEs in every split
        assert (t.ve_id == tab.ve_id).all() and (t.split == tab.split).all()
    n_tr = len(tab.rows("train"))
    print(tab.summary(), flush=True)
    out = {
        "n_ves_joined": len(tab),
        "excluded": tab.excluded,
        "n_train": n_tr,
        "n_val": len(tab.rows("val")),
        "n_test": len(tab.rows("test")),
        "val_fraction": VAL,
        "test_fraction": TEST,
        "members": args.members,
    }
    jpath = work / "evidence.json"
    if jpath.exists():
        out = {**json.loads(jpath.read_text()), **out}

    def save():
        jpath.write_text(json.dumps(out, indent=1))

    # ---------------------------------------------------------------- results table
    if "table" in only:
        rows = []
        specs = [
            ("paper MLP, fingerprint summary", "fingerprint", 1),
            ("paper MLP, standardised fingerprint summary", "fingerprint", 1),
            (f"ensemble x{args.members}, fingerprint summary", "fingerprint", args.members),
            (f"ensemble x{args.members}, decoded statistics (from the fingerprint)", "decoded", args.members),
            (f"ensemble x{args.members}, summary + decoded statistics", "fingerprint+decoded", args.members),
            (f"ensemble x{args.members}, orientation statistics", "orientation", args.members),
            (
                f"ensemble x{args.members}, orientation statistics, axes x y z "
                "(the decoded statistics' features, true VE)",
                "orientation-xyz",
                args.members,
            ),
            (
                f"ensemble x{args.members}, fingerprint + orientation statistics",
                "fingerprint+orientation",
                args.members,
            ),
        ]
        for name, key, m in specs:
            t0 = time.perf_counter()
            sur = fit(tables[key], m, epochs=args.epochs, patience=args.patience, standardize="standardised" in name)
            slug = name.split(" (")[0].replace(" ", "_").replace(",", "").replace("+", "and")
            res = evaluate(sur, tables[key], split="test", out_dir=work / slug)
            r = row(name, res, n_tr)
            r["train_s"] = time.perf_counter() - t0
            r["epochs"] = sur.meta["epochs_run"]
            rows.append(r)
            print(
                f"{name}: MAE {r['mae']:.3f} +- {r['mae_sd']:.3f} MPa, R2 {r['r2']:.4f} ({r['train_s']:.0f} s)",
                flush=True,
            )
            if key in ("fingerprint", "decoded") and m == args.members:
                sur.save(work / f"surrogate_{key}.pt", overwrite=True)
        test = tab.rows("test")
        mean = tab.Y[tab.rows("train")].mean(axis=0)
        base = regression_metrics(tab.Y[test], np.broadcast_to(mean, tab.Y[test].shape), None, first=1)
        rows.append(
            {
                "model": "training mean curve",
                "n_train": n_tr,
                "mae": base["mae_mpa_mean"],
                "mae_sd": base["mae_mpa_sd"],
                "rel": base["rel_pct_mean"],
                "rel_sd": base["rel_pct_sd_all"],
                "r2": base["r2"],
                "rmse": base["rmse_mpa"],
                "coverage": None,
            }
        )
        out["table"] = rows
        save()
        lines = [
            "| model | MAE per increment (MPa) | relative error (%) | R² | ±2σ coverage, calibrated |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            cov = "–" if r.get("coverage") is None else f"{100 * r['coverage']:.1f} %"
            lines.append(
                f"| {r['model']} | {r['mae']:.2f} ± {r['mae_sd']:.2f} | {r['rel']:.2f} ± "
                f"{r['rel_sd']:.2f} | {r['r2']:.4f} | {cov} |"
            )
        (work / "table.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)

    # ---------------------------------------------------------------- learning curve
    if "curve" in only:
        pool = tab.rows("train")
        rng = np.random.default_rng(0)
        order = rng.permutation(pool)
        sizes = [n_tr if s == "all" else int(s) for s in args.sizes.split(",")]
        sizes = sorted({s for s in sizes if s <= n_tr})
        curve = {"sizes": sizes}
        for key in ("decoded", "orientation"):
            maes = []
            for n in sizes:
                t = with_train(tables[key], order[:n])
                maes.append(test_mae(fit(t, args.members, epochs=args.epochs, patience=args.patience), t))
                print(f"learning curve {key} n={n}: {maes[-1]:.3f} MPa", flush=True)
            curve[key] = maes
        mean_maes = []
        for n in sizes:
            m = tab.Y[order[:n]].mean(axis=0)
            test = tab.rows("test")
            mean_maes.append(
                regression_metrics(tab.Y[test], np.broadcast_to(m, tab.Y[test].shape), None, first=1)["mae_mpa_mean"]
            )
        curve["mean curve"] = mean_maes
        out["learning_curve"] = curve
        save()
        plot_lines(
            curve["sizes"],
            {k: curve[k] for k in ("decoded", "orientation", "mean curve")},
            "training VEs",
            "held-out MAE per increment (MPa)",
            f"learning curve, {len(tab.rows('test'))} test VEs, ensemble x{args.members}",
            work / "learning_curve.png",
            logx=True,
        )

    # ---------------------------------------------------------------- active sampling
    if "active" in only:
        t = tables["decoded"]
        pool_all = t.rows("train")
        res = {"n": [], "acquire": [], "random": []}
        for seed in range(args.al_seeds):
            rng = np.random.default_rng(100 + seed)
            start = rng.choice(pool_all, size=min(args.al_start, len(pool_all)), replace=False)
            for strategy in ("acquire", "random"):
                chosen = list(start)
                ns, maes = [], []
                for rnd in range(args.al_rounds + 1):
                    tt = with_train(t, chosen)
                    sur = fit(tt, args.members, seed=seed, epochs=args.epochs, patience=args.patience)
                    ns.append(len(chosen))
                    maes.append(test_mae(sur, tt))
                    print(f"active sampling seed {seed} {strategy} n={len(chosen)}: {maes[-1]:.3f} MPa", flush=True)
                    if rnd == args.al_rounds:
                        break
                    left = np.setdiff1d(pool_all, chosen)
                    k = min(args.al_batch, len(left))
                    if strategy == "acquire":
                        score, _, _ = acquisition_scores(sur, t.X[left])
                        pick = left[np.argsort(-score)[:k]]
                    else:
                        pick = rng.choice(left, size=k, replace=False)
                    chosen += list(pick)
                res[strategy].append(maes)
            res["n"] = ns
        out["active_sampling"] = res
        save()
        plot_lines(
            res["n"],
            {f"{k} (mean of {args.al_seeds} starts)": np.mean(res[k], axis=0).tolist() for k in ("acquire", "random")},
            "CP runs used for training",
            "held-out MAE per increment (MPa)",
            f"active sampling: ensemble spread vs random, batches of {args.al_batch}",
            work / "active_sampling.png",
        )
    out["total_s"] = time.perf_counter() - t_all
    save()
    print(f"done in {out['total_s']:.0f} s -> {jpath}")


def plot_lines(x, series: dict, xlabel, ylabel, title, path, logx=False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 4), dpi=120)
    for k, v in series.items():
        ax.plot(x, v, "o-", label=k)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
