"""Start a new run from the first rounds of an existing one, with settings that do not change those
rounds (the guard, the planner, noise in a later round, the audit), then `selfimprove resume` it.
Round 0 costs most of a CPU run; runs that differ only after it need not train it again.

    python experiments/fork.py runs/cpu-reverse-add runs/cpu-reverse-add-controller --set loop.planner=controller
    selfimprove resume runs/cpu-reverse-add-controller

The forked rounds are copied byte for byte (checkpoints are checked against the manifest's checksums),
so the new run is what a fresh run with the new settings computes: training and generation are
deterministic per seed, and these settings are not read before round `--rounds`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from selfimprove.config import apply_override, dump_toml, load_config, validate
from selfimprove.rundir import RunDir, atomic_write

# settings a fork may change: none of them is read before the first forked-off round
ALLOWED = ("name", "out_dir", "guard.", "loop.planner", "loop.rounds", "loop.tau", "loop.probe_", "loop.max_jump",
           "loop.strict_confidence", "loop.jump_at", "loop.max_problems", "loop.advance_at", "loop.problems",
           "train.round_", "train.anchor", "committee.samples", "committee.temperature", "noise.", "audit.", "tracking")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--rounds", type=int, default=1, help="rounds to copy (default 1: round 0)")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    for o in args.overrides:
        if not o.split("=", 1)[0].startswith(ALLOWED):
            sys.exit(f"--set {o}: a fork may change only settings read after round 0 ({', '.join(ALLOWED)})")
    source = RunDir.open(args.source)
    if source.committed()[: args.rounds] != list(range(args.rounds)):
        sys.exit(f"{args.source} has not committed rounds 0..{args.rounds - 1}")
    if args.target.exists():
        sys.exit(f"{args.target} exists")
    data = load_config(str(args.source / "config.toml")).model_dump(exclude_none=True)
    for o in [f"name={args.target.name}", f"out_dir={args.target.parent}", *args.overrides]:
        apply_override(data, o)
    cfg = validate(data)
    if cfg.noise.round is not None and cfg.noise.round < args.rounds:
        sys.exit("noise.round falls in a copied round")
    args.target.mkdir(parents=True)
    atomic_write(args.target / "config.toml", dump_toml(cfg))
    manifest = source.manifest()
    for r in range(args.rounds):
        source.verified_checkpoint(r)
        for sub in ("rounds", "checkpoints"):
            shutil.copytree(args.source / sub / f"{r:04d}", args.target / sub / f"{r:04d}")
    keep = [f"{r:04d}" for r in range(args.rounds)]
    manifest.update(committed_rounds=list(range(args.rounds)), rounds={k: manifest["rounds"][k] for k in keep},
                    status="running", forked_from=str(args.source))
    manifest.pop("stop_reason", None)
    atomic_write(args.target / "metrics.jsonl",
                 "".join(json.dumps(m) + "\n" for m in source.metrics()[: args.rounds]))
    atomic_write(args.target / "manifest.json", json.dumps(manifest, indent=1))
    print(f"forked rounds 0..{args.rounds - 1} of {args.source} into {args.target}; "
          f"continue with `selfimprove resume {args.target}`")


if __name__ == "__main__":
    main()
