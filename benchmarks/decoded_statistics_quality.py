"""How well the fingerprint's decoded statistics follow the true VE's orientation
statistics, and whether a model trained on many unlabelled VEs reads them better.

    python benchmarks/decoded_statistics_quality.py --test hP16_test.h5 --train hP16_train.h5

Targets: the orientation statistics of each held-out VE of --test
(``orientation_features``, axes x, y, z: 3 × 18 loading-axis bins, 3 × 8 FZ Bunge-angle
bins, the log mean grain volume; 79 numbers for hP). Predictors, per group of
features the mean over features of the correlation r and of R² with the truth:

1. decoded statistics of one reconstruction (the fingerprint file's before 2026-12-07);
2. decoded statistics averaged over the 8 rolls {0, 2}³ (the file's now);
3. a ridge map and a 2-layer MLP from (1) to the truth, fitted on the first
   --denoise-train VEs of --train (does a learned correction of the reconstruction's
   biases help?);
4. a convolutional head from mu (C × 4³, circular padding, mean + max pooling, an MLP)
   to the truth, trained on the first --head-train VEs of --train, each encoded after a
   random periodic roll (can the statistics be read off mu without the decoder?).

No CP and no labels: every target comes from the VE itself, so (3) and (4) may use
tens of thousands of VEs. Torch on --threads threads; VAE: the shipped one for the
dataset's lattice unless --model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

GROUPS_HP = {"x axis": (0, 18), "y axis": (18, 36), "z axis": (36, 54), "Euler angles": (54, 78)}


def _corr(p, y):
    p = p - p.mean(0)
    y = y - y.mean(0)
    return (p * y).sum(0) / np.sqrt((p**2).sum(0) * (y**2).sum(0) + 1e-12)


def _r2(p, y):
    return 1 - ((p - y) ** 2).sum(0) / (((y - y.mean(0)) ** 2).sum(0) + 1e-12)


def collect(model, lattice, path, n, views: int, roll_seed: int | None):
    """mu (n, latent), true statistics (n, D), decoded statistics of one view
    (``views`` >= 1) and of the 8 rolled views (``views`` == 8), else None."""
    from matflow_vae3d.datasets import VEDataset
    from matflow_vae3d.microstructure.statistics import orientation_features
    from matflow_vae3d.vae.encode import (
        decoded_statistics,
        decoded_statistics_of_views,
        encode,
        encode_views,
        loader,
        to_input,
    )

    rng = None if roll_seed is None else np.random.default_rng(roll_seed)
    mus, true, one, avg = [], [], [], []
    with VEDataset(str(path)) as ds:
        n = min(n, len(ds))
        k = 0
        for batch in loader(path, 64, indices=list(range(n))):
            x = to_input(batch, "cpu", model.representation)
            if rng is not None:
                sh = rng.integers(0, x.shape[-1], size=(len(x), 3))
                x = torch.stack([torch.roll(x[b], tuple(int(s) for s in sh[b]), dims=(1, 2, 3)) for b in range(len(x))])
            if views:
                v = encode_views(model, x) if views == 8 else [encode(model, x)]
                mus.append(v[0].numpy())
                one.append(decoded_statistics(model, v[0], lattice))
                if views == 8:
                    avg.append(decoded_statistics_of_views(model, v, lattice))
            else:
                with torch.inference_mode():
                    mus.append(encode(model, x).numpy())
            for _ in range(len(x)):
                ve = ds[k]
                k += 1
                true.append(orientation_features(ve.quaternions, ve.grain_map, ve.lattice, 8, "xyz"))
    one_ = np.concatenate(one) if one else None
    avg_ = np.concatenate(avg) if avg else None
    return np.concatenate(mus), np.stack(true).astype(np.float32), one_, avg_


class StatisticsHead(nn.Module):
    """mu (B, C, g, g, g) -> (B, D): 3 circular 3³ convolutions, mean and max over the
    cells (invariant to rolls of the cells), a 2-layer MLP."""

    def __init__(self, channels: int, out: int, width: int = 64):
        super().__init__()

        def conv(i, o):
            return nn.Conv3d(i, o, 3, padding=1, padding_mode="circular")

        self.body = nn.Sequential(conv(channels, width), nn.GELU(), conv(width, width), nn.GELU(), conv(width, width))
        self.out = nn.Sequential(nn.GELU(), nn.Linear(2 * width, 2 * width), nn.GELU(), nn.Linear(2 * width, out))

    def forward(self, x):
        h = self.body(x).flatten(2)
        return self.out(torch.cat([h.mean(2), h.amax(2)], 1))


def fit_regressor(net, X, Y, epochs, lr, batch=128, augment=None, seed=0):
    """Standardised-target MSE fit with AdamW; the best of the epochs on the first
    10 % of rows (held out). Returns a predictor X -> Y."""
    torch.manual_seed(seed)
    m, s = Y.mean(0), Y.std(0) + 1e-6
    X = torch.as_tensor(X)
    T = torch.as_tensor((Y - m) / s)
    nv = max(1, len(X) // 10)
    Xv, Tv, Xt, Tt = X[:nv], T[:nv], X[nv:], T[nv:]
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    best = (np.inf, None)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), batch):
            b = perm[i : i + batch]
            xb = Xt[b] if augment is None else augment(Xt[b])
            loss = ((net(xb) - Tt[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            vl = float(((net(Xv) - Tv) ** 2).mean())
        if vl < best[0]:
            best = (vl, {k: v.clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[1])

    def predict(Z):
        with torch.no_grad():
            return net(torch.as_tensor(Z)).numpy() * s + m

    return predict


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", required=True, help="held-out VE dataset")
    ap.add_argument("--train", required=True, help="VE dataset for the learned maps (no CP needed)")
    ap.add_argument("--model", default="pretrained")
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--denoise-train", type=int, default=10000)
    ap.add_argument("--head-train", type=int, default=40000)
    ap.add_argument("--head-epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from matflow_vae3d.vae import dataset_lattice, pretrained_path
    from matflow_vae3d.vae.checkpoint import load_model
    from matflow_vae3d.vae.encode import latent_shape

    model, meta = load_model(pretrained_path(dataset_lattice(args.test)) if args.model == "pretrained" else args.model)
    lattice, shape = meta["lattice"], latent_shape(model)
    if lattice != "hP" or len(shape) != 4:
        raise SystemExit("this benchmark groups the 79 hP features of a spatial VAE")
    t0 = time.perf_counter()
    mu_te, y_te, one_te, avg_te = collect(model, lattice, args.test, args.n_test, 8, None)
    print(f"test: {len(y_te)} VEs, {time.perf_counter() - t0:.0f} s", flush=True)
    preds = {"decoded, one reconstruction": one_te, "decoded, mean over the 8 rolls (stored)": avg_te}

    if args.denoise_train:
        t0 = time.perf_counter()
        _, y_tr, one_tr, _ = collect(model, lattice, args.train, args.denoise_train, 1, None)
        dm, ds = one_tr.mean(0), one_tr.std(0) + 1e-6
        A = np.c_[(one_tr - dm) / ds, np.ones(len(one_tr))]
        W = np.linalg.solve(A.T @ A + np.eye(A.shape[1]), A.T @ y_tr)
        preds["ridge map of one reconstruction's"] = np.c_[(one_te - dm) / ds, np.ones(len(one_te))] @ W
        mlp = nn.Sequential(nn.Linear(79, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 79))
        f = fit_regressor(mlp, ((one_tr - dm) / ds).astype(np.float32), y_tr, 60, 1e-3)
        preds["MLP map of one reconstruction's"] = f(((one_te - dm) / ds).astype(np.float32))
        print(f"denoise: {len(y_tr)} training VEs, {time.perf_counter() - t0:.0f} s", flush=True)

    if args.head_train:
        t0 = time.perf_counter()
        mu_tr, y_tr, _, _ = collect(model, lattice, args.train, args.head_train, 0, 0)
        rng = np.random.default_rng(1)

        def roll_cells(x):  # rolls of the latent cells = VE rolls by multiples of the stride
            return torch.roll(x, tuple(int(v) for v in rng.integers(0, shape[1], 3)), dims=(2, 3, 4))

        head = StatisticsHead(shape[0], y_tr.shape[1])
        f = fit_regressor(head, mu_tr.reshape((-1,) + shape), y_tr, args.head_epochs, 2e-3, augment=roll_cells, seed=0)
        preds["conv head on mu"] = f(mu_te.reshape((-1,) + shape))
        print(f"head: {len(y_tr)} training VEs, {time.perf_counter() - t0:.0f} s", flush=True)

    print(f"\n{len(y_te)} held-out VEs of {args.test}; per group: mean r / mean R² with the true statistics")
    print("| predictor | " + " | ".join(GROUPS_HP) + " |")
    print("|---|" + "---|" * len(GROUPS_HP))
    for name, p in preds.items():
        cells = [
            f"{np.nanmean(_corr(p[:, a:b], y_te[:, a:b])):.3f} / {np.nanmean(_r2(p[:, a:b], y_te[:, a:b])):.3f}"
            for a, b in GROUPS_HP.values()
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
