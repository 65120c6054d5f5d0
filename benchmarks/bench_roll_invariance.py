"""What a periodic roll of the VE does to the fingerprint, its roll-invariant summary
and (optionally) a surrogate's predicted stress curve.

A periodic VE rolled by a few voxels is the same microstructure with the same stress
response. Each VE of --data is rolled by a random shift (each axis 0 ... n-1, drawn
with --seed) and encoded again. Printed, per quantity (mu; the moments of one encoding; the stored summary, the
moments averaged over the 8 rolls {0,2}³; the decoded statistics of one view and the
stored ones, averaged over the same 8 rolls): the mean absolute change
caused by the roll divided by the spread of that quantity between different VEs (std
over the set, averaged over features): 0 = invariant, ~1.4 = as different as two
unrelated VEs. With --surrogate (a checkpoint trained on fingerprints of this VAE):
the change of the predicted curve in MPa (mean and max over VEs and increments), fed
the input it was trained on (a surrogate of decoded statistics saved before 2026-12-07
gets one view's).

    python benchmarks/bench_roll_invariance.py --model pretrained --data test.h5 --n 200
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pretrained")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--surrogate", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--png",
        default=None,
        help="bar chart of the relative changes (and, with --surrogate, "
        "the histogram of predicted-curve changes in MPa)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from matflow_vae3d.vae import dataset_lattice, pretrained_path
    from matflow_vae3d.vae.checkpoint import load_model
    from matflow_vae3d.vae.encode import (
        decoded_statistics,
        decoded_statistics_of_views,
        decoded_stats_kind_of,
        encode_views,
        latent_shape,
        loader,
        open_dataset,
        summary_of_views,
        to_input,
        voxel_batch,
    )
    from matflow_vae3d.vae.fingerprints import roll_invariant_summary

    model, meta = load_model(pretrained_path(dataset_lattice(args.data)) if args.model == "pretrained" else args.model)
    ds = open_dataset(args.data, meta)
    n = min(args.n, len(ds))
    rng = np.random.default_rng(args.seed)
    rep, shape, lattice = meta["representation"], latent_shape(model, ds.grid), meta["lattice"]
    keys = ("mu", "summary", "decoded one view", "decoded")
    got: dict[str, list[list[np.ndarray]]] = {k: [[], []] for k in keys}
    exact = 0
    for batch in loader(args.data, voxel_batch(50, ds.grid), indices=list(range(n))):
        x = to_input(batch, "cpu", rep)
        shifts = rng.integers(0, x.shape[-1], size=(len(x), 3))
        exact += int(np.all(shifts % 4 == 0, axis=1).sum())
        xr = torch.stack([torch.roll(x[b], tuple(int(s) for s in shifts[b]), dims=(1, 2, 3)) for b in range(len(x))])
        for i, xs in enumerate((x, xr)):
            views = encode_views(model, xs)
            got["mu"][i].append(views[0].flatten(1).cpu().numpy())
            got["summary"][i].append(summary_of_views(model, views))
            got["decoded one view"][i].append(decoded_statistics(model, views[0], lattice))
            got["decoded"][i].append(decoded_statistics_of_views(model, views, lattice))
    a = {k: [np.concatenate(v[0]), np.concatenate(v[1])] for k, v in got.items()}
    m0, m1 = (roll_invariant_summary(v, shape) for v in a["mu"])

    def rel(u, v):
        spread = u.std(0)
        keep = spread > 1e-8
        return float((np.abs(u - v)[:, keep] / spread[keep]).mean())

    print(
        f"model {meta['architecture']} ({meta['representation']}), latent shape {shape}, {n} VEs of "
        f"{args.data}, random rolls ({exact} of them multiples of the stride 4 on every axis)"
    )
    rows = [
        ("fingerprint mu", a["mu"][0].shape[1], rel(*a["mu"])),
        ("moments of mu (one encoding)", m0.shape[1], rel(m0, m1)),
        ("stored summary (moments averaged over 8 rolls)", a["summary"][0].shape[1], rel(*a["summary"])),
        ("decoded statistics, one view", a["decoded one view"][0].shape[1], rel(*a["decoded one view"])),
        (f"stored decoded statistics ({decoded_stats_kind_of(model)})", a["decoded"][0].shape[1], rel(*a["decoded"])),
    ]
    print("| quantity | size | mean abs change under a roll / spread between VEs |")
    print("|---|---|---|")
    for name, size, r in rows:
        print(f"| {name} | {size} | {r:.3f} |")
    print("| (two unrelated VEs, for scale) | | ~1.13 (E|a-b|/sd of two normal draws) |")
    labels = ("mu", "moments\n(1 encoding)", "summary\n(8 rolls)", "decoded\n(1 view)", "decoded\n(8 rolls)")
    bars = {label: r for label, (_, _, r) in zip(labels, rows)}
    dmpa = None
    if args.surrogate:
        from matflow_vae3d.surrogate.ensemble import Surrogate
        from matflow_vae3d.vae.fingerprints import DECODED_STATS_ONE_VIEW

        sur = Surrogate.load(args.surrogate)
        if sur.model_sha256 != meta["sha256"]:
            raise SystemExit("the surrogate was trained on fingerprints of another VAE")
        dec = "decoded" if sur.input_kind != DECODED_STATS_ONE_VIEW else "decoded one view"
        parts = {"summary": ["summary"], "decoded": [dec], "summary+decoded": ["summary", dec]}[sur.inputs]
        p0, p1 = (sur.predict(np.concatenate([a[k][i] for k in parts], axis=1))[0] for i in (0, 1))
        dmpa = np.abs(np.asarray(p0) - np.asarray(p1))
        print(
            f"surrogate ({sur.inputs}: {'+'.join(parts)}) prediction change under a roll: mean "
            f"{dmpa.mean():.3f} MPa, max {dmpa.max():.3f} MPa (curves of {np.asarray(p0).shape[1]} states)"
        )
        one = {"summary": ["summary"], "decoded": ["decoded one view"]}.get(sur.inputs)
        if one and dec == "decoded":  # what one view instead of the 8 rolled ones would give
            q0, q1 = (sur.predict(np.concatenate([a[k][i] for k in one], axis=1))[0] for i in (0, 1))
            d1 = np.abs(np.asarray(q0) - np.asarray(q1))
            d8 = np.abs(np.asarray(q0) - np.asarray(p0))
            print(
                f"fed one view's decoded statistics instead: change under a roll mean {d1.mean():.3f} MPa, "
                f"max {d1.max():.3f}; one view vs the 8 rolled views of the same VE: mean {d8.mean():.3f} MPa, "
                f"max {d8.max():.3f}"
            )
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(
            1, 2 if dmpa is not None else 1, figsize=(10 if dmpa is not None else 5.5, 3.4), squeeze=False
        )
        ax = axes[0, 0]
        ax.bar(list(bars), list(bars.values()), color=["grey", "tab:orange", "tab:blue", "tab:olive", "tab:green"])
        ax.tick_params(axis="x", labelsize=8)
        ax.axhline(1.13, ls="--", c="k", lw=0.8, label="two unrelated VEs")
        ax.set_ylabel("mean |change| under a random roll\n/ spread between VEs")
        ax.set_title(f"{n} VEs, random periodic rolls", fontsize=9)
        ax.legend(fontsize=8)
        if dmpa is not None:
            ax = axes[0, 1]
            ax.hist(dmpa.ravel(), bins=40)
            ax.set_xlabel("|predicted sigma change| under a roll (MPa)")
            ax.set_title(f"surrogate: mean {dmpa.mean():.3f}, max {dmpa.max():.3f} MPa", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"figure -> {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
