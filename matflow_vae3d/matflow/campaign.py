"""What a campaign costs, before it starts: CPU time per task kind from measured
per-VE costs, and the refusal of a large campaign on the direct scheduler.

Measured on the project's 2-core CPU machine (one core per process; docs/matflow.md
"Campaign cost"):

- CP, embedded solver, Mg, the paper's load case (1 % in 20 increments): 19.6 s per
  16³ `train` VE (mean solver wall time of 560 VEs, 2026-12-03, both cores busy) and
  85 s per 32³ VE (docs/cp_solver.md). Other grids: scaled by the number of cells from
  the nearest measured grid (an extrapolation beyond 32³).
- VE generation: 0.097 s CPU per 64³ `train` VE (docs/benchmarks.md), scaled by cells.
- VAE (periodic preset, CPU, one thread): training 37 VEs/s at 16³, fingerprinting
  with the roll-invariant summary 24 VEs/s at 16³ (docs/vae.md), scaled by cells. A GPU
  is much faster; this is the CPU bound the direct scheduler would meet.
"""

from __future__ import annotations

from typing import Any

#: CP solver s per VE (one core) at measured grids.
CP_S_PER_VE = {16: 19.6, 32: 85.0}
GENERATE_S_PER_VE_64 = 0.097
VAE_TRAIN_VES_PER_S_16 = 37.0
VAE_FINGERPRINT_VES_PER_S_16 = 24.0
#: the direct scheduler runs on this machine: above this many CPU-hours it needs a yes
DIRECT_LIMIT_CPU_HOURS = 24.0


def cp_seconds_per_ve(grid: int) -> tuple[float, bool]:
    """(s per VE on one core, extrapolated?) of the embedded solver at ``grid``³."""
    g = int(grid)
    if g in CP_S_PER_VE:
        return CP_S_PER_VE[g], False
    ref = min(CP_S_PER_VE, key=lambda m: abs(m - g))
    return CP_S_PER_VE[ref] * (g / ref) ** 3, True


def campaign_cost(
    VEs_per_shard: int, n_train_shards: int, n_campaign_shards: int, grid: int, vae_epochs: int
) -> dict[str, Any]:
    """CPU-hours per task kind and in total, with the per-shard figures."""
    n_sh, g = int(VEs_per_shard), int(grid)
    n_train, n_camp = n_sh * int(n_train_shards), n_sh * int(n_campaign_shards)
    cells = (g / 16) ** 3
    cp_s, extrapolated = cp_seconds_per_ve(g)
    gen_s = GENERATE_S_PER_VE_64 * (g / 64) ** 3
    train_s = cells / VAE_TRAIN_VES_PER_S_16
    fp_s = cells / VAE_FINGERPRINT_VES_PER_S_16
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
    }


def check_direct_scale(scale: dict[str, Any]) -> dict[str, Any]:
    """The campaign's cost (:func:`campaign_cost`); ValueError when it would run on the
    direct scheduler (this machine) for more than :data:`DIRECT_LIMIT_CPU_HOURS` CPU-hours
    and ``scale['confirmed']`` is not true."""
    keys = ("scheduler", "VEs_per_shard", "n_train_shards", "n_campaign_shards", "grid", "vae_epochs")
    missing = [k for k in keys if k not in scale]
    if missing:
        raise ValueError(f"campaign_scale: missing keys {missing}")
    cost = campaign_cost(*(scale[k] for k in keys[1:]))
    confirmed = str(scale.get("confirmed", False)).lower() in ("true", "1", "yes")
    h = cost["cpu_hours_total"]
    if str(scale["scheduler"]) == "direct" and h > DIRECT_LIMIT_CPU_HOURS and not confirmed:
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in cost["cpu_hours"].items())
        raise ValueError(
            f"this campaign needs about {h:,.0f} CPU-hours ({parts}; CP {cost['cp_s_per_VE']:.0f} s per "
            f"{cost['grid']}³ VE{', extrapolated by cell count' if cost['cp_extrapolated'] else ''}) on the direct "
            "scheduler, i.e. this machine: run it on a cluster (--var scheduler slurm), make it smaller "
            "(--var grid 16 --var n_train_shards ...), or confirm with --var confirm_scale true"
        )
    return {**cost, "scheduler": str(scale["scheduler"]), "confirmed": confirmed}
