"""Load-path surrogate evidence (issue 14): the GRU on VAE fingerprints vs the same
network on orientation statistics, on both, and without the microstructure, and zero
stress, on one fixed held-out split; and, where uniaxial CP curves of the same VEs
exist, the path model's prediction of the paper's load case next to them.

    python benchmarks/path_surrogate_evidence.py --ves ves.h5 --paths-cp paths_cp.h5 --work DIR \\
        [--uniaxial-cp mg_cp.h5] [--members 3] [--max-epochs 400]

Made in DIR when missing: ``fp.h5`` (fingerprints of the shipped VAE for the dataset's
lattice) and ``orient_xyz.h5`` (orientation statistics along x, y and z). Written:
``evidence.json`` (every number), ``table.md``, ``<variant>/paths_test.png`` and the
checkpoints ``<variant>.pt``. Split: VEs by id hash (seed 0; val 15 %, test 20 %).
Every network trains on one thread.

Training on rotated copies (``vae3d rotate-cp``): give the augmented path results as
``--paths-cp`` and the VE dataset of originals and copies as ``--ves``, and the
original CP files as ``--eval-cp``: the headline figures are then on the held-out rows
of those files only (the same rows as without augmentation), and ``all_test_rows`` adds
the held-out copies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from surrogate_evidence import combined, fingerprints  # noqa: E402

from matflow_vae3d.surrogate.path_evaluate import path_metrics, plot_paths, zero_prediction  # noqa: E402
from matflow_vae3d.surrogate.path_surrogate import PathTrainConfig, train_path_surrogate  # noqa: E402
from matflow_vae3d.surrogate.path_table import build_path_table  # noqa: E402
from matflow_vae3d.surrogate.table import read_fingerprints  # noqa: E402

VAL, TEST = 0.15, 0.20


def orientation_xyz(ves: Path, work: Path) -> Path:
    from matflow_vae3d.surrogate.baselines import write_feature_file

    out = work / "orient_xyz.h5"
    if not out.exists():
        write_feature_file(ves, out, progress=False, axes="xyz")
    return out


def uniaxial_agreement(sur, feats, table, uniaxial_cp: Path, fp=None) -> dict:
    """The paper's load case predicted by the path model for the held-out VEs that
    have a uniaxial CP curve: sigma_xx MAE (MPa, states 1..n) against that curve and,
    given ``fp`` (the fingerprints the shipped uniaxial surrogate reads), against the
    shipped uniaxial surrogate's prediction for the same VEs (and its own error)."""
    from matflow_vae3d.cp.loadcase import LoadCase
    from matflow_vae3d.surrogate.table import read_stresses

    st = read_stresses(uniaxial_cp)
    ok = st.status == "converged"
    curve = {v: st.sigma[k][:, 0, 0] / 1e6 for k, v in enumerate(st.ve_id) if ok[k]}  # Pa -> MPa
    test_ves = sorted(set(table.ve_id[table.rows("test")]) & set(curve))
    if not test_ves:
        return {"n_ve": 0}
    row = {v: k for k, v in enumerate(feats.ve_id)} if feats is not None else {}
    X = feats.mu[[row[v] for v in test_ves]] if feats is not None else None
    lc = LoadCase.uniaxial()
    pred = sur.predict(X if X is not None else None, lc)["sigma"][..., 0, 0] / 1e6
    if pred.shape[0] == 1 and len(test_ves) > 1:
        pred = np.repeat(pred, len(test_ves), axis=0)
    cp = np.stack([curve[v] for v in test_ves])
    if cp.shape[1] != pred.shape[1]:
        return {"n_ve": 0, "note": f"uniaxial CP has {cp.shape[1]} states, the paper's load case {pred.shape[1]}"}
    err = np.abs(pred[:, 1:] - cp[:, 1:])
    out = {"n_ve": len(test_ves), "mae_mpa": float(err.mean()), "mae_mpa_final": float(err[:, -1].mean())}
    if fp is not None:
        from matflow_vae3d.surrogate.ensemble import Surrogate
        from matflow_vae3d.surrogate.from_ves import pretrained_surrogate_path

        uni = Surrogate.load(pretrained_surrogate_path("Mg"))
        r = {v: k for k, v in enumerate(fp.ve_id)}
        mean, _ = uni.predict(fp.mu[[r[v] for v in test_ves]])
        out["vs_uniaxial_surrogate_mpa"] = float(np.abs(pred[:, 1:] - mean[:, 1:]).mean())
        out["uniaxial_surrogate_mae_mpa"] = float(np.abs(mean[:, 1:] - cp[:, 1:]).mean())
    return out


def hold_out_paths(table, fraction: float):
    """Rows whose random path is among the held-out ``fraction`` of random paths (seeded
    hash of the original path id, so a path's rotated copies go with it) leave train and
    val ('unused'); test rows keep them, so that unseen_paths finds them."""
    import dataclasses
    import re

    from matflow_vae3d.cp.rotations import base_path_id
    from matflow_vae3d.surrogate.table import split_by_id

    base = [base_path_id(p) for p in table.path_id]
    paths = sorted({p for p in base if re.match(r"^p\d+-", p)})
    held = {p for p, sp in zip(paths, split_by_id(paths, 0.0, fraction, seed=1)) if sp == "test"}
    leave = np.array([p in held for p in base]) & (table.split != "test")
    return dataclasses.replace(table, split=np.where(leave, "unused", table.split))


def eval_pairs(eval_cp) -> set | None:
    """The (VE, path) pairs of the ``eval_cp`` path results files (None if none given)."""
    if not eval_cp:
        return None
    from matflow_vae3d.cp.path_results import read_path_results

    pairs = set()
    for f in eval_cp:
        d = read_path_results(f, fields=("ve_id", "path_id"))
        pairs |= set(zip(d["ve_id"], d["path_id"]))
    return pairs


def eval_rows(table, pairs) -> np.ndarray:
    """Held-out rows that are among ``pairs`` (:func:`eval_pairs`; all held-out rows if None)."""
    test = table.rows("test")
    if pairs is None:
        return test
    return test[[(v, p) in pairs for v, p in zip(table.ve_id[test], table.path_id[test])]]


def unseen_paths(table, test) -> np.ndarray:
    """Held-out rows whose path (or a rotation of it) no training row has (held-out VEs
    x held-out paths)."""
    from matflow_vae3d.cp.rotations import base_path_id

    seen = {base_path_id(p) for p in table.path_id[table.rows("train")]}
    return test[[base_path_id(p) not in seen for p in table.path_id[test]]]


def mae_on(table, pred, rows) -> float:
    """Row-mean stress MAE (MPa) on ``rows``; NaN when there are none."""
    return path_metrics(table, pred, rows)["mae_mpa"] if len(rows) else float("nan")


def held_out_kind(table, cfg, kind: str, in_dist_mean, test) -> dict:
    """Train again without any row of path ``kind`` (they become 'unused' in train and
    val) and compare, on the held-out VEs' rows of that kind, with the model that saw
    the kind in training (``in_dist_mean``) and with zero stress."""
    import dataclasses

    from matflow_vae3d.surrogate.path_table import path_kind

    kinds = np.array([path_kind(p) for p in table.path_id])
    split = np.where((kinds == kind) & (table.split != "test"), "unused", table.split)
    rows = test[kinds[test] == kind]
    if len(rows) == 0:
        return {"kind": kind, "n_rows": 0}
    without = dataclasses.replace(table, split=split)
    sur = train_path_surrogate(without, cfg, progress=False)
    mean, _ = sur.predict_targets(without.X if without.X.shape[1] else None, without.U)
    return {
        "kind": kind,
        "n_rows": int(len(rows)),
        "n_train_rows_removed": int(((kinds == kind) & (table.split == "train")).sum()),
        "mae_mpa_never_seen": path_metrics(table, mean, rows)["mae_mpa"],
        "mae_mpa_seen_in_training": path_metrics(table, in_dist_mean, rows)["mae_mpa"],
        "mae_mpa_zero_stress": path_metrics(table, zero_prediction(table), rows)["mae_mpa"],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ves", type=Path, required=True)
    ap.add_argument("--paths-cp", type=Path, required=True, nargs="+")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--uniaxial-cp", type=Path)
    ap.add_argument(
        "--eval-cp",
        type=Path,
        nargs="+",
        help="report the headline on the held-out rows of these path results files only (default: all held-out rows)",
    )
    ap.add_argument("--vae", default="pretrained")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--max-epochs", type=int, default=400)
    ap.add_argument("--patience", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=None, help="GRU layers (default: PathTrainConfig's)")
    ap.add_argument("--lr", type=float, default=None, help="default: PathTrainConfig's")
    ap.add_argument("--batch-size", type=int, default=None, help="default: PathTrainConfig's")
    ap.add_argument("--features-initial-only", action="store_true", help="features in the initial hidden state only")
    ap.add_argument(
        "--path-test-fraction",
        type=float,
        default=0.0,
        help="also hold out this fraction of the paths (by id hash): their rows leave training, "
        "and 'unseen paths' is held-out VEs x held-out paths",
    )
    ap.add_argument(
        "--hold-out-kind",
        default="reversal",
        help="path kind left out of training in one extra run of the first variant ('' for none)",
    )
    ap.add_argument(
        "--variants",
        default="fingerprint,orientation,fingerprint+orientation,none",
        help="comma-separated subset (the VAE needs the grid it was trained on)",
    )
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    want = a.variants.split(",")
    # the fingerprint as the CLI reads it by default: its decoded statistics where the file has them
    fp = (
        read_fingerprints(fingerprints(a.ves, a.work, a.vae), inputs="auto")
        if any("fingerprint" in w for w in want)
        else None
    )
    orient = read_fingerprints(orientation_xyz(a.ves, a.work))
    variants = {"orientation": orient, "none": None}
    if fp is not None:
        variants |= {"fingerprint": fp, "fingerprint+orientation": combined(fp, orient)}
    variants = {k: variants[k] for k in want}
    extra = {k: v for k, v in (("layers", a.layers), ("lr", a.lr), ("batch_size", a.batch_size)) if v is not None}
    extra["feature_steps"] = not a.features_initial_only
    cfg = PathTrainConfig(n_members=a.members, hidden=a.hidden, max_epochs=a.max_epochs, patience=a.patience, **extra)
    out: dict = {"config": vars(cfg) | {"val": VAL, "test": TEST}, "variants": {}}
    rows = [
        "| predictor | held-out stress MAE (MPa) | relative to path range | unseen paths MAE | R² "
        "| ±2σ coverage | epochs | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    zero_done = False
    pairs = eval_pairs(a.eval_cp)
    for name, feats in variants.items():
        kind = "none" if feats is None else ("orientation" if name == "orientation" else "fingerprint")
        table = build_path_table(a.paths_cp, feats, kind, VAL, TEST, seed=0)
        if a.path_test_fraction > 0:
            table = hold_out_paths(table, a.path_test_fraction)
        test = eval_rows(table, pairs)
        if not zero_done:
            print(table.summary(), flush=True)
            print(f"headline: {len(test)} held-out rows of {len(table.rows('test'))}", flush=True)
            z = path_metrics(table, zero_prediction(table), test)
            z.pop("mae_mpa_per_row")
            out["zero_stress"] = z
            out["zero_stress_all_test_rows"] = mae_on(table, zero_prediction(table), table.rows("test"))
            zu = mae_on(table, zero_prediction(table), unseen_paths(table, test))
            rows.append(
                f"| zero stress (constant) | {z['mae_mpa']:.2f} ± {z['mae_mpa_sd']:.2f} | "
                f"{100 * z['relative_mae']:.1f} % | {zu:.2f} | {z['r2']:.3f} | – | – | – |"
            )
            out["summary"] = table.summary()
            zero_done = True
        t0 = time.perf_counter()
        sur = train_path_surrogate(table, cfg, progress=False)
        dt = time.perf_counter() - t0
        sur.save(a.work / f"{name.replace('+', '_')}.pt", overwrite=True)
        mean, std = sur.predict_targets(table.X if feats is not None else None, table.U)
        m = path_metrics(table, mean, test, std)
        m.pop("mae_mpa_per_row")
        m["epochs"], m["train_s"] = sur.meta["epochs_run"], dt
        every = table.rows("test")
        m["all_test_rows"] = {"n_rows": int(len(every)), "mae_mpa": mae_on(table, mean, every)}
        unseen = unseen_paths(table, test)
        m["unseen_paths"] = {"n_rows": int(len(unseen)), "mae_mpa": mae_on(table, mean, unseen)}
        if a.uniaxial_cp:
            m["uniaxial_paper_case"] = uniaxial_agreement(sur, feats, table, a.uniaxial_cp, fp)
        out["variants"][name] = m
        (a.work / name.replace("+", "_")).mkdir(exist_ok=True)
        plot_paths(table, mean, test, a.work / name.replace("+", "_") / "paths_test.png", std)
        cov = f"{100 * m['coverage_2sigma']:.1f} %" if "coverage_2sigma" in m else "–"
        mae = f"{m['mae_mpa']:.2f} ± {m['mae_mpa_sd']:.2f}"
        rel, mu = f"{100 * m['relative_mae']:.1f} %", f"{m['unseen_paths']['mae_mpa']:.2f}"
        rows.append(f"| GRU, {name} | {mae} | {rel} | {mu} | {m['r2']:.3f} | {cov} | {m['epochs']} | {dt:.0f} |")
        print(rows[-1], flush=True)
        if a.hold_out_kind and name == want[0]:
            out["held_out_kind"] = held_out_kind(table, cfg, a.hold_out_kind, mean, test)
            print(f"held-out kind {a.hold_out_kind!r}: {out['held_out_kind']}", flush=True)
    (a.work / "evidence.json").write_text(json.dumps(out, indent=1, default=float))
    (a.work / "table.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
