"""Runs untrusted Python (a model's program) under bubblewrap, with operating-system isolation: no
network, a read-only view of /usr only (never the root, the home, the project or the run directory),
private tmpfs scratch, its own PID, IPC, UTS and user namespaces, no capabilities, no further user
namespaces, an unprivileged uid, an empty environment, and per-job limits on CPU seconds, memory,
processes, file size, open files, output size and wall-clock time.

    with Sandbox(workers=2) as box:
        results = box.run_many([(source, inputs), ...])   # Result(status, outputs, reason) each

A program is Python source that defines `f`; a job's outputs are [f(x) for x in inputs], returned as
JSON through a pipe. This process only parses them as data: it never imports, unpickles or evaluates
anything that comes back. Each worker is one long-lived sandbox whose fork server
(`_sandbox_server.py`) runs one job at a time in a fresh child and, after it, kills every process the
job left and wipes the scratch folders, so one program cannot change what another returns. Where
bubblewrap is missing or cannot make namespaces, `Sandbox` raises `SandboxUnavailable` with what to
install: there is no fallback that runs code unprotected.
"""

from __future__ import annotations

import json
import os
import queue
import select
import shutil
import subprocess
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

PYTHON = "/usr/bin/python3"  # the system's interpreter: the sandbox sees /usr only
NOBODY = 65534
STATUSES = ("ok", "error", "timeout", "memory", "output", "crash")


class SandboxUnavailable(RuntimeError):
    """bubblewrap (or the system Python, or user namespaces) is missing: the message says how to fix it."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 2.0  # wall-clock seconds per job; the whole process tree is killed after it
    cpu: int = 2  # CPU seconds per job
    memory: int = 512 << 20  # bytes of address space
    processes: int = 16  # processes of the sandbox's user (the fork server among them)
    file_size: int = 1 << 20  # bytes, largest file a job may write
    open_files: int = 64
    output: int = 1 << 16  # bytes of JSON a job may return

    def __post_init__(self):
        if self.timeout <= 0 or min(self.cpu, self.memory, self.processes, self.file_size, self.open_files,
                                    self.output) < 1:
            raise ValueError(f"sandbox limits must be positive, got {self}")


@dataclass(frozen=True)
class Result:
    status: str  # ok | error (the program raised) | timeout | memory | output (too large) | crash
    outputs: list | None = None  # [f(x) for x in inputs] when ok
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def drop_reason(self) -> str:
        """How a filter names this failure: "sandbox: timeout", "sandbox: error", ..."""
        return f"sandbox: {self.status}"


def _bwrap_args(bwrap: str) -> list[str]:
    args = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", str(NOBODY), "--gid", str(NOBODY), "--hostname", "sandbox", "--clearenv",
            "--setenv", "PATH", "/usr/bin", "--setenv", "HOME", "/tmp", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args + ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm",
                   "--chdir", "/tmp", PYTHON, "-I", "-S", "-B", "-c",
                   resources.files("selfimprove").joinpath("_sandbox_server.py").read_text()]


def _preflight() -> str:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap is not installed, and selfimprove never runs a model's code without it: install it "
            "(Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)")
    if not os.access(PYTHON, os.X_OK):
        raise SandboxUnavailable(f"the sandbox runs programs with the system's {PYTHON}, which is missing: "
                                 "install it (Debian/Ubuntu: sudo apt-get install python3)")
    return bwrap


class _Worker:
    """One long-lived sandbox and its fork server; one job at a time."""

    def __init__(self, bwrap: str):
        self.bwrap = bwrap
        self.proc: subprocess.Popen | None = None
        self.buffer = b""

    def start(self) -> None:
        root = os.geteuid() == 0  # run bubblewrap itself as nobody: the sandbox's uid is unprivileged outside too
        self.proc = subprocess.Popen(
            _bwrap_args(self.bwrap), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin"}, cwd="/", close_fds=True,
            **({"user": NOBODY, "group": NOBODY, "extra_groups": []} if root else {}))
        self.buffer = b""
        line = self._line(time.monotonic() + 30, 64)
        if line != b"ready":
            self.stop()
            message = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
            raise SandboxUnavailable(
                f"bubblewrap could not start a sandbox ({message or 'no message'}). It needs unprivileged user "
                "namespaces: check `sysctl kernel.unprivileged_userns_clone` (Debian: 1), "
                "`sysctl kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 24.04: 0, or an AppArmor profile "
                "for bwrap) and `sysctl user.max_user_namespaces` (> 0); in a container, allow namespaces "
                "(e.g. docker --security-opt seccomp=unconfined)")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe:
                    pipe.close()

    def _line(self, deadline: float, most: int) -> bytes | None:
        """The server's next line, None if it closed, said too much or missed the deadline."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or len(self.buffer) > most or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def run(self, source: str, inputs: list, limits: Limits) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write(json.dumps({"source": source, "inputs": inputs, "limits": asdict(limits)}).encode()
                                  + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.stop()
            return Result("crash", reason="the sandbox ended before the job")
        line = self._line(time.monotonic() + limits.timeout + 10, 8 * limits.output + 4096)
        result = parse(line, len(inputs)) if line is not None else None
        if result is None:  # the program killed its sandbox, or the server misbehaved: a fresh one for the next job
            self.stop()
            return Result("crash", reason="the sandbox ended during the job")
        return result


def parse(line: bytes, n_inputs: int) -> Result | None:
    """A result line from a sandbox, checked as data; None when it is not one."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("status") not in STATUSES:
        return None
    reason = raw.get("reason")
    reason = str(reason)[:200] if reason is not None else None
    outputs = raw.get("outputs")
    if raw["status"] == "ok" and not (isinstance(outputs, list) and len(outputs) == n_inputs):
        return Result("error", reason="the program returned no list of one output per input")
    return Result(raw["status"], outputs if raw["status"] == "ok" else None, reason)


class Sandbox:
    """A pool of `workers` sandboxes, each served by a thread of its own for the pool's life (bubblewrap
    dies with the thread that started it: `--die-with-parent`); `run_many` spreads jobs over them."""

    def __init__(self, workers: int = 2, limits: Limits | None = None):
        if workers < 1:
            raise ValueError(f"a sandbox needs at least one worker, got {workers}")
        self.limits = limits or Limits()
        bwrap = _preflight()
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        for _ in range(workers):
            ready: Future = Future()
            thread = threading.Thread(target=self._serve, args=(_Worker(bwrap), ready), daemon=True)
            thread.start()
            self.threads.append(thread)
            try:
                ready.result()  # fail here, with the reason, when no sandbox can start
            except SandboxUnavailable:
                self.close()
                raise

    def _serve(self, worker: _Worker, ready: Future) -> None:
        try:
            worker.start()
        except BaseException as e:  # noqa: BLE001 (handed to the caller)
            ready.set_exception(e)
            return
        ready.set_result(None)
        try:
            while (job := self.jobs.get()) is not None:
                future, source, inputs = job
                try:
                    future.set_result(worker.run(source, inputs, self.limits))
                except BaseException as e:  # noqa: BLE001 (handed to the caller)
                    future.set_exception(e)
        finally:
            worker.stop()

    def run(self, source: str, inputs: list[Any]) -> Result:
        return self.run_many([(source, inputs)])[0]

    def run_many(self, jobs: list[tuple[str, list[Any]]]) -> list[Result]:
        futures = []
        for source, inputs in jobs:
            futures.append(Future())
            self.jobs.put((futures[-1], source, inputs))
        return [f.result() for f in futures]

    def close(self) -> None:
        for thread in self.threads:
            if thread.is_alive():
                self.jobs.put(None)
        for thread in self.threads:
            thread.join()
        self.threads = []

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
