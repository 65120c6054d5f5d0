"""What a campaign costs, before it starts: CPU time per task kind from measured
per-VE costs, and the refusal of a large campaign on the direct scheduler.

Measured on the project's 2-core CPU machine (one core per process; docs/matflow.md
"Campaign cost"):

- CP, embedded solver, Mg, the paper's load case (1 % in 20 increments), real `train`
  VEs, the solver of 2026-12-08 (docs/cp_solver.md "Side by side with DAMASK_grid"):
  700 s CPU per 64³ VE (one VE, 1.43 GB peak), 70 s per 32³ VE and 14.1 s per 16³ VE (the
  earlier means, 112 s over the 32³ reference set and 19.6 s over 560 16³ VEs with both
  cores busy, scaled by the side-by-side's after / before CPU on the same VEs: 68.1/108.4
  at 32³, 15.8/21.9 at 16³), 1.9 s per 8³ VE (the 16³ ratio applied to 2.6 s, a 16³ VE
  coarsened by 2). Coarse CP (``cp_coarsen``
  K, or 'auto' for the preset's grains, :func:`matflow_vae3d.cp.simulate.auto_coarsen`)
  costs what the grid / K costs. Grids between measured ones: scaled by cells from the
  nearest.
- VE generation: 0.097 s CPU per 64³ `train` VE (docs/benchmarks.md), scaled by cells.
- VAE (periodic preset, CPU, one thread): training 37 VEs/s at 16³ (docs/vae.md),
  scaled by cells; the full fingerprint (mu, summary over 8 rolls, decoded statistics)
  of the shipped VAE 0.09 s per 16³ VE, 0.16 s at 32³, 1.23 s at 64³
  (benchmarks/vae_grids.py --speed, 2026-12-07, the other core running CP), other grids
  scaled by cells from the nearest. A GPU is much faster; this is the CPU bound the
  direct scheduler would meet.
"""

from __future__ import annotations

from typing import Any

#: CP solver s per VE (one core) at measured grids (cells per edge of the grid solved).
CP_S_PER_VE = {8: 1.9, 16: 14.1, 32: 70.0, 64: 700.0}
#: mean ESD (voxels) of the campaign's `train` preset, for cp_coarsen 'auto'
TRAIN_ESD_VOXELS = 5.78
GENERATE_S_PER_VE_64 = 0.097
VAE_TRAIN_VES_PER_S_16 = 37.0
#: full fingerprint, s per VE on one core, at measured grids
FINGERPRINT_S_PER_VE = {16: 0.09, 32: 0.16, 64: 1.23}
#: the keys of a campaign_scale that price a campaign
SCALE_KEYS = ("scheduler", "VEs_per_shard", "n_train_shards", "n_campaign_shards", "grid", "vae_epochs")
#: the direct scheduler runs on this machine: above this many CPU-hours it needs a yes
DIRECT_LIMIT_CPU_HOURS = 24.0


def cp_seconds_per_ve(grid: int, coarsen: int = 1) -> tuple[float, bool]:
    """(s per VE on one core, extrapolated?) of the embedded solver on ``grid``³ VEs
    solved on ``grid / coarsen``³."""
    return _by_grid(CP_S_PER_VE, int(grid) / int(coarsen))


def _by_grid(table: dict, grid: float) -> tuple[float, bool]:
    """(a per-VE cost at ``grid``, extrapolated?): measured, or scaled by cells from the
    nearest measured grid."""
    if grid in table:
        return float(table[int(grid)]), False
    ref = min(table, key=lambda m: abs(m - grid))
    return float(table[ref]) * (grid / ref) ** 3, True


def campaign_coarsen(grid: int, cp_coarsen="1") -> int:
    """The campaign's CP coarsening factor: an int, or 'auto' for `train`-preset VEs."""
    from ..cp.simulate import auto_coarsen

    if str(cp_coarsen).strip().lower() == "auto":
        return auto_coarsen((int(grid),) * 3, TRAIN_ESD_VOXELS)
    k = int(cp_coarsen)
    if k < 1 or int(grid) % k:
        raise ValueError(f"cp_coarsen {cp_coarsen!r} must be auto or a positive divisor of the grid {grid}")
    return k


def campaign_cost(
    VEs_per_shard: int, n_train_shards: int, n_campaign_shards: int, grid: int, vae_epochs: int, cp_coarsen="1"
) -> dict[str, Any]:
    """CPU-hours per task kind and in total, with the per-shard figures; ``cp_coarsen``:
    the CP coarsening factor or 'auto'."""
    n_sh, g = int(VEs_per_shard), int(grid)
    n_train, n_camp = n_sh * int(n_train_shards), n_sh * int(n_campaign_shards)
    cells = (g / 16) ** 3
    k = campaign_coarsen(g, cp_coarsen)
    cp_s, extrapolated = cp_seconds_per_ve(g, k)
    gen_s = GENERATE_S_PER_VE_64 * (g / 64) ** 3
    train_s = cells / VAE_TRAIN_VES_PER_S_16
    fp_s, _ = _by_grid(FINGERPRINT_S_PER_VE, g)
    hours = {
        "generate_VE": (n_train + n_camp) * gen_s / 3600,
        "train_VAE": int(vae_epochs) * n_train * train_s / 3600,
        "fingerprint_VE": n_camp * fp_s / 3600,
        "simulate_uniaxial": n_camp * cp_s / 3600,
    }
    return {
        "grid": g,
        "n_train_VEs": n_train,
        "n_campaign_VEs": n_camp,
        "cpu_hours": hours,
        "cpu_hours_total": sum(hours.values()),
        "cp_hours_per_shard": n_sh * cp_s / 3600,
        "cp_s_per_VE": cp_s,
        "cp_extrapolated": extrapolated,
        "cp_coarsen": k,
    }


def check_direct_scale(scale: dict[str, Any]) -> dict[str, Any]:
    """The campaign's cost (:func:`campaign_cost`); ValueError when it would run on the
    direct scheduler (this machine) for more than :data:`DIRECT_LIMIT_CPU_HOURS` CPU-hours
    and ``scale['confirmed']`` is not true."""
    keys = SCALE_KEYS
    missing = [k for k in keys if k not in scale]
    if missing:
        raise ValueError(f"campaign_scale: missing keys {missing}")
    cost = campaign_cost(**{k: scale[k] for k in keys[1:]}, cp_coarsen=scale.get("cp_coarsen", 1))
    confirmed = str(scale.get("confirmed", False)).lower() in ("true", "1", "yes")
    h = cost["cpu_hours_total"]
    if str(scale["scheduler"]) == "direct" and h > DIRECT_LIMIT_CPU_HOURS and not confirmed:
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in cost["cpu_hours"].items())
        solved = f" solved on its grid / {cost['cp_coarsen']}" if cost["cp_coarsen"] > 1 else ""
        raise ValueError(
            f"this campaign needs about {h:,.0f} CPU-hours ({parts}; CP {cost['cp_s_per_VE']:.0f} s per "
            f"{cost['grid']}³ VE{solved}{', extrapolated by cell count' if cost['cp_extrapolated'] else ''}) on "
            "the direct scheduler, i.e. this machine: run it on a cluster (--var scheduler slurm), make it smaller "
            "(--var grid 16 --var n_train_shards ...), or confirm with --var confirm_scale true"
        )
    return {**cost, "scheduler": str(scale["scheduler"]), "confirmed": confirmed}
