#!/usr/bin/env python
"""MatFlow orchestration overhead of the campaign's fan-out vs shard size.

One MatFlow element = one shard of VEs. The campaign's fan-out is
generate_VE -> (fingerprint_VE, simulate_uniaxial) per shard -> one grouped task.
This script measures, on this machine (direct scheduler, zarr store):

1. the cost per element of that fan-out with actions that do no work but import what
   the real actions import (numpy, h5py, torch, the package), for MatFlow's default
   (one jobscript command per run) and with ``combine_scripts``: wall time of
   workflows with 1 and K shards, per element = (t_K - t_1) / (K - 1);
2. ``matflow make`` time and peak memory of the campaign template at full scale
   (50,000 campaign + 110,000 training VEs) for several shard sizes (in subprocesses).

It prints a table: per-VE bookkeeping = per-element cost / VEs per shard, and the job
array size a SLURM submission would get. Reference (docs/matflow.md and
/work/shared/notes/matflow.md): about 7 s per element by default, combine_scripts 0.3 s
per element at 200 elements but superlinear past a few hundred.

    python benchmarks/bench_matflow_shards.py [--k 6] [--k-combine 40] [--shards 100 1000 5000]
        [--no-torch] [--skip-make]

The combine_scripts column uses the larger of the small-workflow slope and the
per-element cost at --k-combine shards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCRIPT = """
def {name}(**inputs):
    import os, time
    import numpy, h5py
    {imports}
    wk = os.environ.get("MATFLOW_WK_PATH", ".")
    rid = os.environ.get("MATFLOW_RUN_ID", "0")
    d = os.path.join(wk, "bench_data"); os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "{name}_" + rid + ".txt")
    open(p, "w").write(repr(sorted(inputs)))
    return {{"{out}": p}}
"""

SCHEMAS = [
    # (objective, inputs [(name, group)], output)
    ("bench_generate", [("VE_shard", None)], "VE_dataset"),
    ("bench_fingerprint", [("VE_dataset", None)], "fingerprints"),
    ("bench_simulate", [("VE_dataset", None)], "CP_results"),
    ("bench_collect", [("fingerprints", "campaign"), ("CP_results", "campaign")], "surrogate_checkpoint"),
]


def write_components(d: Path, torch: bool) -> dict[str, list[str]]:
    from matflow_vae3d.matflow.install import render

    paths = render(d / "plugin")
    ts = []
    for obj, inputs, out in SCHEMAS:
        script = d / f"{obj}.py"
        imports = "import torch, matflow_vae3d.vae" if torch else "import matflow_vae3d"
        script.write_text(SCRIPT.format(name=obj, imports=imports, out=out))
        ts.append(
            {
                "objective": obj,
                "doc": "benchmark no-op",
                "inputs": [dict(parameter=n, **({"group": g} if g else {})) for n, g in inputs],
                "outputs": [{"parameter": out}],
                "actions": [
                    {
                        "script": f"<<script:{script}>>",
                        "script_data_in": "direct",
                        "script_data_out": "direct",
                        "script_exe": "python_script",
                        "environments": [{"scope": {"type": "any"}, "environment": "vae3d_env"}],
                    }
                ],
            }
        )
    import yaml

    (d / "bench_schemas.yaml").write_text(yaml.safe_dump(ts, sort_keys=False))
    return {
        "task_schema_sources": [str(d / "bench_schemas.yaml")],
        "parameter_sources": [str(paths["parameter_sources"])],
        "environment_sources": [str(paths["environment_sources"])],
    }


def template(n: int, combine: bool) -> str:
    res = "resources: {any: {combine_scripts: true}}\n" if combine else ""
    return res + textwrap.dedent(f"""\
        tasks:
          - schema: bench_generate
            sequences:
              - path: inputs.VE_shard
                values::from_range: {{start: 0, stop: {n}}}
          - schema: bench_fingerprint
            groups: [{{name: campaign}}]
          - schema: bench_simulate
            groups: [{{name: campaign}}]
          - schema: bench_collect
        """)


def run_once(d: Path, n: int, combine: bool) -> float:
    import matflow as mf

    yml = d / f"wf_{n}_{int(combine)}.yaml"
    yml.write_text(template(n, combine))
    t0 = time.perf_counter()
    wk = mf.Workflow.from_YAML_file(str(yml), path=str(d / "wks"), overwrite=True, store="zarr")
    wk.submit(wait=True, add_to_known=False, status=False, quiet=True)
    wall = time.perf_counter() - t0
    bad = [r.status.name for r in wk.get_all_EARs() if r.status.name != "success"]
    if bad:
        raise RuntimeError(f"{len(bad)} runs did not succeed ({set(bad)}) in {wk.path}")
    return wall


MAKE_CODE = """
import json, resource, sys, time
import matflow as mf
from matflow_vae3d.matflow.install import hermetic_overrides
ov = hermetic_overrides(sys.argv[1] + "/r")
mf.load_config(config_dir=sys.argv[1] + "/cfg", overrides=ov, warn=False)
mf.reload_template_components(warn=False)
shard = int(sys.argv[2])
t0 = time.perf_counter()
wk = mf.Workflow.from_YAML_file(sys.argv[3], path=sys.argv[1] + "/wks", overwrite=True, store="zarr",
    variables={"VEs_per_shard": str(shard), "n_train_shards": str(-(-110000 // shard)),
               "n_val_VEs": "10000", "n_campaign_shards": str(-(-50000 // shard))})
t = time.perf_counter() - t0
print(json.dumps({"make_s": t, "peak_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""


def make_at_scale(shard: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                MAKE_CODE,
                d,
                str(shard),
                str(ROOT / "workflow_templates" / "uniaxial_campaign.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if r.returncode:
            return {"make_s": float("nan"), "peak_GB": float("nan"), "error": r.stderr[-300:]}
        return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=6, help="shards of the larger workflow (default 6)")
    ap.add_argument(
        "--shards",
        type=int,
        nargs="+",
        default=[100, 500, 1000, 5000],
        help="VEs per shard to tabulate (default 100 500 1000 5000)",
    )
    ap.add_argument(
        "--k-combine", type=int, default=40, help="shards of a larger combine_scripts workflow (0: skip; default 40)"
    )
    ap.add_argument("--no-torch", action="store_true", help="no-op actions do not import torch")
    ap.add_argument("--skip-make", action="store_true", help="skip the full-scale make measurements")
    args = ap.parse_args(argv)

    import matflow as mf

    per_el = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ov = write_components(d, torch=not args.no_torch)
        if mf.is_config_loaded:
            mf.unload_config()
        mf.load_config(config_dir=str(d / "cfg"), overrides=ov, warn=False)
        mf.reload_template_components(warn=False)
        for combine in (False, True):
            t1 = run_once(d, 1, combine)
            tk = run_once(d, args.k, combine)
            per_el[combine] = (tk - t1) / (args.k - 1)
            print(
                f"combine_scripts={combine}: 1 shard {t1:.1f} s, {args.k} shards {tk:.1f} s "
                f"-> {per_el[combine]:.2f} s per element (3 runs each)",
                flush=True,
            )
        if args.k_combine:
            tb = run_once(d, args.k_combine, True)
            big = (tb - t1) / (args.k_combine - 1)
            print(
                f"combine_scripts=True: {args.k_combine} shards {tb:.1f} s -> {big:.2f} s per "
                f"element at that size (superlinear growth shows here)",
                flush=True,
            )
            per_el[True] = max(per_el[True], big)
        mf.unload_config()

    make = {} if args.skip_make else {s: make_at_scale(s) for s in args.shards}
    print()
    print(
        "Campaign fan-out overhead vs shard size (direct scheduler, zarr store, 2-core shared machine: timings noisy)"
    )
    print(
        f"{'VEs/shard':>9} | {'elements @50k':>13} | {'make s (160k VEs)':>17} | {'peak GB':>7} | "
        f"{'ms/VE default':>13} | {'ms/VE combine':>13} | SLURM array"
    )
    for s in args.shards:
        n_el = -(-50000 // s)
        m = make.get(s, {"make_s": float("nan"), "peak_GB": float("nan")})
        print(
            f"{s:>9} | {n_el:>13} | {m['make_s']:>17.1f} | {m['peak_GB']:>7.2f} | "
            f"{1e3 * per_el[False] / s:>13.2f} | {1e3 * per_el[True] / s:>13.2f} | "
            f"1-{n_el}"
        )
    print(
        "reference: notes/matflow.md — ~7 s per element default; combine_scripts "
        "59 s for 200 elements, 846 s for 1,000 (superlinear); target < 10 ms/VE"
    )


if __name__ == "__main__":
    main()
