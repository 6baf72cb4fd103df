"""The metrics of one small run of a given source tree, without timings: to check that a change leaves
the tiny learner's results as they were, bit for bit.

    git worktree add /tmp/old 9c6e47f
    python experiments/same_metrics.py /tmp/old > old.json && python experiments/same_metrics.py . > new.json
    cmp old.json new.json

The run: the tests' learning fixture (string copy, 1..3 letters, a 2-layer model), two members voting,
each labelling with its moving average (train.ema = 0.9), two self-improvement rounds, one CPU thread.
"""

import json
import sys
import tempfile
from pathlib import Path

tree = Path(sys.argv[1]).resolve()
sys.path[:0] = [str(tree / "src"), str(tree / "tests")]

import torch  # noqa: E402
from conftest import learning_overrides  # noqa: E402

from selfimprove.config import dump_toml, load_config  # noqa: E402
from selfimprove.loop import run_loop  # noqa: E402
from selfimprove.rundir import RunDir  # noqa: E402

torch.set_num_threads(1)
with tempfile.TemporaryDirectory() as out:
    cfg = load_config("quick", [*learning_overrides(out), "train.ema=0.9", "committee.size=2", "committee.agree=0.5",
                                "loop.filters=['majority', 'length']"])
    history = run_loop(cfg, RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed))
for m in history:
    m.pop("seconds")
    m.pop("samples", None)  # a key added with sampled votes; 1 here
print(json.dumps(history))
