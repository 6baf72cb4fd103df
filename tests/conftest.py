import os

import pytest
import torch

torch.set_num_threads(1)


def learning_overrides(out_dir) -> list[str]:
    """A loop that learns, end to end in a few seconds on one CPU core: string copy, seed data of 1..3
    letters. Round 0 copies 1 letter always and 3 letters about half the time, so the audit has solved and
    unsolved lengths and a frontier, and each self-round keeps some labels and drops others, some of
    the kept ones wrong (label precision strictly between 0 and 1)."""
    return [
        f"out_dir={out_dir}", "name=tiny", "device=cpu", "task.name=copy", "task.base=3",
        "model.n_layer=2", "model.n_head=2", "model.d_model=64", "model.d_ff=128",
        "train.batch_size=64", "train.lr=3e-3", "train.steps=200", "train.round_steps=20",
        "loop.rounds=2", "loop.seed_problems=600", "loop.problems=200", "loop.label_batch=256",
        "loop.filters=['length']", "audit.problems=50", "audit.below=3", "audit.above=2", "audit.base=0",
        "guard.mode=off",  # the guard judges this small model harshly; tests/test_guard.py turns it on
    ]


@pytest.fixture
def tiny_overrides(tmp_path):
    return learning_overrides(tmp_path / "runs")


@pytest.fixture
def fake_overrides(tmp_path):
    """A committee of three fake learners (tests/fakes.py) on string copy: nothing is trained, every
    answer is known in advance."""
    return [
        f"out_dir={tmp_path / 'runs'}", "name=fake", "device=cpu", "task.name=copy", "task.base=4",
        "committee.size=3", "committee.agree=1.0", "loop.filters=['majority', 'length']",
        "train.batch_size=4", "train.steps=5", "train.round_steps=3",
        "loop.rounds=2", "loop.seed_problems=50", "loop.problems=400",
        "audit.problems=200", "audit.below=3", "audit.above=2", "audit.base=0",
    ]


@pytest.fixture(scope="session")
def program_sandbox():
    """The program task's sandbox; skips where bubblewrap cannot run, except in CI, where it fails."""
    from selfimprove.sandbox import SandboxUnavailable
    from selfimprove.tasks import programs

    try:
        return programs.sandbox()
    except SandboxUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the program task's tests: {e}")
        pytest.skip(str(e))
