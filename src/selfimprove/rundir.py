"""The run directory, a contract that reports, resume and outside tools read (see DESIGN.md).

A round becomes visible only when complete: its files are written under `NNNN.tmp/` names, renamed,
then metrics.jsonl and finally manifest.json are replaced atomically. The manifest is the commit
point: anything on disk beyond the rounds it lists is a crashed round and is deleted on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def trains(m: dict[str, Any]) -> bool:
    """Whether a recorded round's labels and weights are the run's: the guard committed it (a round recorded
    before the guard existed has no decision and counts as committed)."""
    return m.get("decision", "commit") == "commit"


class RunError(RuntimeError):
    """A run directory that cannot be used as asked; the message says why and what to do."""


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    _fsync_write(tmp, data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import numpy
    import torch

    from selfimprove import __version__

    versions = {"selfimprove": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": numpy.__version__, "pyarrow": pa.__version__}
    for extra in ("transformers", "peft"):  # when the learner uses them
        if extra in sys.modules:
            versions[extra] = sys.modules[extra].__version__
    return versions


class RunDir:
    def __init__(self, root: Path):
        self.root = root

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, config_toml: str, seed: int, overwrite: bool = False, **about: Any) -> RunDir:
        """A new, empty run. Refuses an existing run unless `overwrite`. `about` goes in the manifest (the
        learner: its kind, and for a Hugging Face model the resolved id and revision)."""
        if root.exists() and any(root.iterdir()):
            if not overwrite:
                raise RunError(
                    f"run directory {root} already exists. Resume it with `selfimprove resume {root}`, "
                    f"choose another name with `--set name=NEW`, or replace it with `--overwrite`.")
            if not (root / "manifest.json").exists() and not (root / "config.toml").exists():
                raise RunError(f"{root} exists and is not a selfimprove run; refusing to delete it with "
                               f"--overwrite. Choose another name with `--set name=NEW`.")
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            staging = root.parent / f".{root.name}.new"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            atomic_write(staging / "config.toml", config_toml)
            run = cls(staging)
            run._write_manifest({"status": "running", "committed_rounds": [], "seed": seed,
                                 "versions": _versions(), "created": time.time(), "rounds": {}, **about})
            if root.exists():
                shutil.rmtree(root)
            os.replace(staging, root)
        except PermissionError as e:
            raise RunError(f"cannot write the run directory {root} ({e.strerror}); choose a writable place "
                           f"with `--set out_dir=PATH`.") from None
        except OSError as e:
            raise RunError(f"cannot create the run directory {root}: {e}") from None
        return cls(root)

    @classmethod
    def open(cls, root: Path) -> RunDir:
        run = cls(root)
        if not (root / "manifest.json").is_file() or not (root / "config.toml").is_file():
            raise RunError(f"{root} is not a selfimprove run (no manifest.json or config.toml); "
                           f"`selfimprove status` lists the runs under ./runs.")
        try:
            run.manifest()
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise RunError(f"{root}/manifest.json is damaged ({e}); this run cannot be resumed.") from None
        return run

    # --- reading -------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        m = json.loads((self.root / "manifest.json").read_text())
        m["committed_rounds"], m["rounds"]  # noqa: B018  (required keys)
        return m

    def committed(self) -> list[int]:
        return list(self.manifest()["committed_rounds"])

    def trained_rounds(self) -> list[int]:
        """The recorded rounds the guard committed: their labels and weights are the run's (a held,
        rolled-back or stopping round has no weights of its own; runs without decisions: every round)."""
        rounds = self.manifest()["rounds"]
        return [r for r in self.committed() if trains(rounds.get(f"{r:04d}", {}))]

    def metrics(self) -> list[dict[str, Any]]:
        """Metrics of committed rounds only."""
        path = self.root / "metrics.jsonl"
        n = len(self.committed())
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:n]

    def round_dir(self, r: int) -> Path:
        return self.root / "rounds" / f"{r:04d}"

    def checkpoint_dir(self, r: int) -> Path:
        return self.root / "checkpoints" / f"{r:04d}"

    def candidates(self, r: int) -> pa.Table:
        return pq.read_table(self.round_dir(r) / "candidates.parquet")

    def verified_checkpoint(self, r: int) -> Path:
        """The checkpoint folder of committed round r, after checking every file's checksum."""
        ckpt = self.checkpoint_dir(r)
        for name, digest in self.manifest()["rounds"][f"{r:04d}"]["checkpoint"].items():
            path = ckpt / name
            if not path.is_file():
                raise RunError(f"checkpoint file {path} is missing; the run cannot resume from round {r}.")
            if sha256(path) != digest:
                raise RunError(f"checkpoint file {path} does not match the checksum in manifest.json "
                               f"(damaged or replaced); the run cannot resume from round {r}. Restore the "
                               f"file, or start a new run.")
        return ckpt

    # --- writing -------------------------------------------------------------------------------

    def _write_manifest(self, m: dict[str, Any]) -> None:
        m["updated"] = time.time()
        atomic_write(self.root / "manifest.json", json.dumps(m, indent=1))

    def set_status(self, status: str, **extra: Any) -> None:
        m = self.manifest()
        m.update(status=status, **extra)
        self._write_manifest(m)

    def set_progress(self, r: int, phase: str) -> None:
        """Record the round and phase in flight (progress.json), for `selfimprove status`."""
        atomic_write(self.root / "progress.json",
                     json.dumps({"round": r, "phase": phase, "since": time.time(), "pid": os.getpid()}))

    def progress(self) -> dict[str, Any] | None:
        """The round and phase in flight, and whether the process that runs it is alive; None if unknown."""
        try:
            p = json.loads((self.root / "progress.json").read_text())
            p["round"], p["phase"], p["since"]  # noqa: B018  (required keys)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        pid = p.get("pid")
        p["alive"] = False
        if isinstance(pid, int) and pid > 0:  # kill(0 or -1, 0) would ask about a whole group of processes
            try:
                os.kill(pid, 0)
                p["alive"] = True
            except OSError:
                pass
        return p

    def discard_uncommitted(self) -> list[str]:
        """Delete what a crash left behind: temp files and rounds the manifest does not list."""
        keep = {f"{r:04d}" for r in self.committed()}
        removed = []
        for sub in ("rounds", "checkpoints"):
            for path in sorted((self.root / sub).glob("*")) if (self.root / sub).exists() else []:
                if path.name not in keep:
                    shutil.rmtree(path)
                    removed.append(f"{sub}/{path.name}")
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink()
        atomic_write(self.root / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in self.metrics()))
        return removed

    def commit_round(self, r: int, tables: dict[str, pa.Table], save_checkpoint: Callable[[Path], list[Path]],
                     metrics: dict[str, Any]) -> None:
        """Write round r atomically: parquet tables, checkpoint files, metrics line, manifest last. The
        manifest records the guard's decision: only a committed round's weights and labels are the run's."""
        name = f"{r:04d}"
        rounds_tmp = self.root / "rounds" / f"{name}.tmp"
        ckpt_tmp = self.root / "checkpoints" / f"{name}.tmp"
        for tmp in (rounds_tmp, ckpt_tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        for table_name, table in tables.items():
            pq.write_table(table, rounds_tmp / f"{table_name}.parquet")
        files = save_checkpoint(ckpt_tmp)
        checksums = {f.name: sha256(f) for f in files}
        for path in [*rounds_tmp.iterdir(), *files]:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        os.replace(rounds_tmp, self.round_dir(r))
        os.replace(ckpt_tmp, self.checkpoint_dir(r))
        lines = [*self.metrics(), metrics]
        atomic_write(self.root / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in lines))
        m = self.manifest()
        m["committed_rounds"] = [*m["committed_rounds"], r]
        m["rounds"][name] = {"checkpoint": checksums, "committed": time.time(), "decision": metrics.get("decision")}
        self._write_manifest(m)
