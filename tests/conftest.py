import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def tiny_overrides(tmp_path):
    """A loop small enough to run end to end in seconds on one CPU core."""
    return [
        f"out_dir={tmp_path / 'runs'}", "name=tiny", "device=cpu", "task.name=reverse_add",
        "task.base=3", "model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.d_ff=64",
        "train.batch_size=32", "train.steps=30", "train.round_steps=10",
        "loop.rounds=2", "loop.seed_problems=200", "loop.problems=100", "loop.label_batch=64",
        "audit.problems=20", "audit.below=1", "audit.above=1",
    ]
