"""The optional TensorBoard sink: one round written, read back from the event file's records."""

import struct
import sys
from pathlib import Path

import pytest

from selfimprove.tracking import log_round, scalars

METRICS = {"round": 3, "difficulties": [[8]], "n_generated": 100, "n_kept": 80, "drop_reasons": {"length": 20},
           "label_precision": 0.95, "label_recall": None, "audit": {"7": 1.0, "8": 0.5}, "frontier": 7,
           "train_steps": 10, "train_loss": 0.25, "seconds": {"act": 1.5, "learn": 3.0}, "decision": "commit",
           "signals": {"drift": 0.02, "invariant": None}}


def read_scalars(folder: Path) -> dict[tuple[str, int], float]:
    """Every scalar in the TFRecord event files of `folder` (length, crc, event proto, crc per record)."""
    from tensorboardX.proto.event_pb2 import Event

    found = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        while data:
            (n,) = struct.unpack("<Q", data[:8])
            event = Event.FromString(data[12 : 12 + n])
            data = data[16 + n :]
            for value in event.summary.value:
                found[value.tag, event.step] = value.simple_value
    return found


def test_scalars_leave_out_what_is_missing():
    s = scalars(METRICS)
    assert s["labels/kept_share"] == 0.8 and s["audit/8"] == 0.5 and s["frontier"] == 7
    assert "labels/recall" not in s and "committee" not in s
    assert s["signals/drift"] == 0.02 and "signals/invariant" not in s  # the guard's signals, where measured
    assert scalars({"round": 1, "frontier": [[3, 4], [5, 1]], "audit": {"3,4": 1.0}}) == {
        "frontier": 7.0, "audit/3x4": 1.0}


def test_a_round_is_written_and_read_back(tmp_path):
    pytest.importorskip("tensorboardX", reason="the `tracking` extra is not installed")
    folder = log_round(tmp_path, METRICS)
    log_round(tmp_path, {**METRICS, "round": 4, "train_loss": 0.125})
    assert folder == tmp_path / "tracking"
    found = read_scalars(folder)
    assert found["labels/precision", 3] == pytest.approx(0.95)
    assert found["train/loss", 3] == 0.25 and found["train/loss", 4] == 0.125
    assert found["audit/7", 3] == 1.0 and found["seconds/learn", 3] == 3.0 and found["drop_reasons/length", 3] == 20


def test_missing_extra_gives_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"selfimprove\[tracking\]"):
        log_round(tmp_path, METRICS)


@pytest.mark.learns
def test_tracking_by_config_writes_every_committed_round(tiny_overrides):
    pytest.importorskip("tensorboardX")
    from selfimprove.config import dump_toml, load_config
    from selfimprove.loop import run_loop
    from selfimprove.rundir import RunDir

    cfg = load_config("quick", [*tiny_overrides, "tracking=tensorboard", "loop.rounds=1"])
    run = RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)
    history = run_loop(cfg, run)
    found = read_scalars(run.root / "tracking")
    assert {("frontier", m["round"]) for m in history} <= set(found)
