"""The VAE's latent space (MISSION §5): decoded linear paths between fingerprints,
PCA to 2D with edge-case sets projected, and spectral clustering of labelled sets
scored after the best matching of clusters to labels.
"""

from __future__ import annotations

import numpy as np
import torch


@torch.inference_mode()
def decode_path(model, mu_a, mu_b, steps: int = 8, latent_shape=None) -> torch.Tensor:
    """Decode z = (1 - t) mu_a + t mu_b for t = 0 ... 1 (``steps`` points).

    mu_a, mu_b: (latent,) array-like; latent_shape: (C, gx, gy, gz) of a spatial
    latent of a grid other than the training grid (default: the model's own). Returns
    (steps, C, nx, ny, nz) on CPU in the model's representation (normalised Euler
    angles or unit quaternions).
    """
    if steps < 2:
        raise ValueError("a path needs at least 2 steps")
    model = model.eval()
    dev = next(model.parameters()).device
    a = torch.as_tensor(np.asarray(mu_a), dtype=torch.float32, device=dev)
    b = torch.as_tensor(np.asarray(mu_b), dtype=torch.float32, device=dev)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"path end points must be two (latent,) vectors, got {tuple(a.shape)}, {tuple(b.shape)}")
    t = torch.linspace(0.0, 1.0, steps, device=dev).unsqueeze(1)
    z = (1 - t) * a + t * b
    if latent_shape is not None and len(latent_shape) == 4:
        z = z.reshape((steps,) + tuple(int(n) for n in latent_shape))
    return model.decode(z).float().cpu()


def plot_path(images: torch.Tensor, png, labels=None, representation: str = "euler", lattice: str = "hP") -> None:
    """PNG strip of mid-slices (z = n/2) of decoded images (steps, C, n, n, n) of
    ``representation``, coloured by normalised FZ Euler angles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fileio import save_figure
    from .vae.encode import _rgb, display_image

    x = display_image(images.float().cpu(), representation, lattice).numpy()
    k = x.shape[-1] // 2
    scale = np.maximum(x.reshape(len(x), 3, -1).max(axis=(0, 2)), 1e-3)
    fig, axes = plt.subplots(1, len(x), figsize=(1.8 * len(x), 2.2), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.imshow(_rgb(x[j][:, :, :, k], scale).transpose(1, 0, 2), origin="lower", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(labels[j] if labels is not None else f"t={j / (len(x) - 1):.2f}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, png, dpi=110)


def fit_pca(train_mu: np.ndarray, n_components: int = 2):
    """sklearn PCA fitted on training fingerprints (n, latent)."""
    from sklearn.decomposition import PCA

    train_mu = np.asarray(train_mu, dtype=np.float64)
    if train_mu.ndim != 2 or len(train_mu) < n_components:
        raise ValueError(f"need at least {n_components} training fingerprints (n, latent), got {train_mu.shape}")
    return PCA(n_components=n_components).fit(train_mu)


def plot_pca(pca, train_mu, sets: dict, png) -> None:
    """Scatter of training fingerprints (grey) and named sets projected by ``pca``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fileio import save_figure

    fig, ax = plt.subplots(figsize=(6, 5))
    p = pca.transform(np.asarray(train_mu, dtype=np.float64))
    ax.scatter(p[:, 0], p[:, 1], s=4, c="0.7", label="train")
    for name, mu in sets.items():
        q = pca.transform(np.asarray(mu, dtype=np.float64))
        ax.scatter(q[:, 0], q[:, 1], s=8, label=name)
    ev = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({100 * ev[0]:.1f} %)")
    ax.set_ylabel(f"PC2 ({100 * ev[1]:.1f} %)")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    save_figure(fig, png, dpi=110)


def matched_accuracy(labels, clusters) -> float:
    """Fraction of samples whose cluster maps to their label under the best one-to-one
    matching of clusters to labels (Hungarian algorithm on the confusion matrix)."""
    from scipy.optimize import linear_sum_assignment

    labels, clusters = np.asarray(labels), np.asarray(clusters)
    if labels.shape != clusters.shape:
        raise ValueError("labels and clusters must have the same length")
    lu, li = np.unique(labels, return_inverse=True)
    cu, ci = np.unique(clusters, return_inverse=True)
    conf = np.zeros((len(cu), len(lu)), dtype=np.int64)
    np.add.at(conf, (ci, li), 1)
    r, c = linear_sum_assignment(-conf)
    return float(conf[r, c].sum() / len(labels))


def spectral_clustering(sets: dict, pca=None, n_neighbors: int = 10, seed: int = 0) -> dict:
    """Spectral clustering of labelled fingerprint sets {label: (n_i, latent)}.

    With ``pca`` (e.g. 3 components fitted on training fingerprints, as in the
    paper) the fingerprints are projected first. Returns {'accuracy', 'labels',
    'clusters', 'n_clusters'}.
    """
    from sklearn.cluster import SpectralClustering

    if len(sets) < 2:
        raise ValueError("spectral clustering needs at least two labelled sets")
    X = np.concatenate([np.asarray(v, dtype=np.float64) for v in sets.values()])
    y = np.concatenate([[k] * len(v) for k, v in sets.items()])
    if pca is not None:
        X = pca.transform(X)
    k = len(sets)
    sc = SpectralClustering(
        n_clusters=k,
        affinity="nearest_neighbors",
        n_neighbors=min(n_neighbors, len(X) - 1),
        random_state=seed,
        assign_labels="cluster_qr",
    )
    clusters = sc.fit_predict(X)
    return {"accuracy": matched_accuracy(y, clusters), "labels": y, "clusters": clusters, "n_clusters": k}
