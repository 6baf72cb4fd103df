"""The fork server that runs inside each sandbox (stdlib only: it is passed to `python3 -I -S -c` and
never imported by the package). It reads one job per line on stdin, {"source", "inputs", "limits"},
runs it in a fresh forked child, and writes one result per line on stdout, {"status", "outputs",
"reason"}. One job at a time: after each, every other process in the sandbox is killed and the
scratch folders are wiped, so nothing a program leaves behind reaches the next one.

A job's child closes every descriptor of the server's, sets its limits, and runs the source, which
must define `f`; the outputs are [f(x) for x in inputs] as JSON. Whatever the child writes is only
data to the parent, which parses it as JSON and checks it.
"""

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import time

SCRATCH = ("/tmp", "/dev/shm")
RLIMITS = {"cpu": resource.RLIMIT_CPU, "memory": resource.RLIMIT_AS, "processes": resource.RLIMIT_NPROC,
           "file_size": resource.RLIMIT_FSIZE, "open_files": resource.RLIMIT_NOFILE}


def child(source, inputs, limits, w):
    """In the forked child: cut every tie to the server, limit, run, write the result, exit."""
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, w)
    os.closerange(w + 1, 1 << 16)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, which in RLIMITS.items():
        value = limits[name]
        resource.setrlimit(which, (value, value + 1 if name == "cpu" else value))
    work = os.path.join(SCRATCH[0], "work")
    os.mkdir(work, 0o700)
    os.chdir(work)
    memory = b'{"status": "memory", "reason": "MemoryError"}'
    try:
        namespace = {"__name__": "__program__"}
        exec(compile(source, "program.py", "exec"), namespace)  # inside the sandbox: what it exists for
        f = namespace.get("f")
        if not callable(f):
            raise NameError("the program defines no function f")
        payload = json.dumps({"status": "ok", "outputs": [f(x) for x in inputs]}).encode()
    except MemoryError:
        payload = memory
    except RecursionError as e:
        payload = json.dumps({"status": "error", "reason": f"RecursionError: {e}"[:200]}).encode()
    except BaseException as e:  # noqa: BLE001 (a program's every failure is a result)
        try:
            payload = json.dumps({"status": "error", "reason": f"{type(e).__name__}: {e}"[:200]}).encode()
        except MemoryError:
            payload = memory
    view = memoryview(payload)
    while view:
        view = view[os.write(w, view):]
    os._exit(0)


def read_result(r, pid, deadline, most):
    """The child's bytes (at most `most` + 1) and its wait status, or None for the status at the deadline.
    Once the child has exited, what the pipe holds is all of its result (a process it left behind may
    keep the pipe open: `clear` ends it)."""
    data, open_ = b"", True
    while time.monotonic() < deadline:
        wait = max(0.0, min(0.05, deadline - time.monotonic()))
        if open_ and select.select([r], [], [], wait)[0]:
            chunk = os.read(r, 65536)
            data += chunk
            if len(data) > most:
                return data, 0  # too much: the verdict says so, `clear` ends the child
            open_ = bool(chunk)
            continue
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            while open_ and select.select([r], [], [], 0)[0]:
                chunk = os.read(r, 65536)
                data, open_ = data + chunk, bool(chunk)
                if len(data) > most:
                    return data, 0
            return data, status
        if not open_:
            time.sleep(0.001)
    return data, None


def clear(me):
    """Kill every process in the sandbox but init and this server, reap ours, wipe the scratch folders."""
    for _ in range(1000):
        try:
            os.kill(-1, signal.SIGKILL)  # every process this server may signal, itself and init excepted
        except ProcessLookupError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        if not [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]:
            break
        time.sleep(0.001)
    for folder in SCRATCH:
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def verdict(data, status, limits):
    """The result of a job from what its child wrote and how it ended."""
    if status is None:
        return {"status": "timeout", "reason": f"wall clock over {limits['timeout']} s"}
    if len(data) > limits["output"]:
        return {"status": "output", "reason": f"output over {limits['output']} bytes"}
    if data:
        try:
            result = json.loads(data)
        except ValueError:
            result = None
        if isinstance(result, dict) and result.get("status") in ("ok", "error", "memory"):
            return {"status": result["status"], "outputs": result.get("outputs"),
                    "reason": str(result.get("reason"))[:200] if result.get("reason") is not None else None}
        return {"status": "error", "reason": "output: not a result"}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return {"status": "timeout", "reason": f"cpu time over {limits['cpu']} s"}
        return {"status": "crash", "reason": f"killed by signal {signal.Signals(sig).name}"}
    return {"status": "crash", "reason": f"exited with status {os.waitstatus_to_exitcode(status)} before its result"}


def main():
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no job may ptrace this server or open its fds
    me = os.getpid()
    out = os.fdopen(1, "wb", buffering=0)
    out.write(b"ready\n")
    for line in sys.stdin.buffer:
        job = json.loads(line)
        limits = job["limits"]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                child(job["source"], job["inputs"], limits, w)
            finally:
                os._exit(70)
        os.close(w)
        data, status = read_result(r, pid, time.monotonic() + limits["timeout"], limits["output"])
        os.close(r)
        clear(me)
        out.write(json.dumps(verdict(data, status, limits)).encode() + b"\n")


main()
