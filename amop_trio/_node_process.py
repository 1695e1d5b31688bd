"""Node processes of a local chain: started, reported ready, supervised and stopped.

Theory of operation
-------------------
Each node is an ``amop node --config DIR/nodeN/config.toml`` process in a
session of its own, its output appended to ``DIR/nodeN/node.log``. It is
*ready* when it says so itself: the launcher hands it the write end of a
pipe (``--ready-fd``) and the node writes one line there once its listeners
are bound, so another process holding the port can never pass for the node.
A node that fails first closes the pipe without that line, and the launcher
reports the last line of its log.

An *attached* node (``amop chain`` in the foreground) also gets the read end
of a second pipe (``--lifeline-fd``) whose write end only the launcher
holds: when the launcher goes away, however it dies, the node reads EOF and
stops. Nothing depends on which thread forked the node. A *detached* node
(``amop chain start``) gets no lifeline and outlives its launcher.

Every node writes its pid to ``DIR/nodeN/node.pid`` once ready. ``stop``
signals a pid only after proving, from ``/proc/<pid>/cmdline`` and
``/proc/<pid>/cwd``, that it is ``amop node`` running that very config; a
pid file left behind by a killed node never leads to signalling whatever
process reused the number. On Linux the pid is pinned with a pidfd first, so
the check and the signal concern the same process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import trio

from ._errors import AmopError

PID_FILE = "node.pid"
LOG_FILE = "node.log"
#: What a node writes to its ready pipe once it listens.
READY_LINE = b"ready\n"
#: Seconds a node may take to start listening.
START_TIMEOUT = 30.0
#: Seconds a node may take to stop after SIGTERM before it gets SIGKILL.
STOP_GRACE = 10.0


@dataclass
class Started:
    """A node process started by this process."""

    name: str
    config: Path
    process: trio.Process
    #: write end of the attached node's lifeline; closing it stops the node.
    lifeline: int | None = None

    def close_lifeline(self) -> None:
        if self.lifeline is not None:
            os.close(self.lifeline)
            self.lifeline = None


def node_command(
    config: Path, *, verbose: int, ready_fd: int, lifeline_fd: int | None
) -> list[str]:
    command = [sys.executable, "-m", "amop_trio", "node", "--config", str(config)]
    command += ["--pid-file", str(config.parent / PID_FILE), "--ready-fd", str(ready_fd)]
    if lifeline_fd is not None:
        command += ["--lifeline-fd", str(lifeline_fd)]
    if verbose:
        command.append("-" + "v" * verbose)
    return command


def last_log_line(config: Path) -> str:
    """The last non-empty line of a node's log, for an error message."""
    try:
        with (config.parent / LOG_FILE).open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 4096))
            tail = log.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return "no log"
    return tail[-1].strip()[:300] if tail else "nothing logged"


async def start_node(
    config: Path, *, detached: bool, verbose: int = 0, timeout: float = START_TIMEOUT
) -> Started:
    """Start the node of ``config`` and return once it reports that it listens.

    ``AmopError`` says why it did not start, from its log; a node that does
    not report within ``timeout`` is killed.
    """
    config = _resolved(config)
    name = config.parent.name
    ready_r, ready_w = os.pipe()
    life_r, life_w = os.pipe() if not detached else (None, None)
    pass_fds = (ready_w,) if life_r is None else (ready_w, life_r)
    try:
        with (config.parent / LOG_FILE).open("ab") as log:
            process = await trio.lowlevel.open_process(
                node_command(config, verbose=verbose, ready_fd=ready_w, lifeline_fd=life_r),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=config.parent,
                pass_fds=pass_fds,
                start_new_session=True,  # no terminal's Ctrl-C or hangup reaches it
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
    except BaseException:
        for fd in (ready_r, ready_w, life_r, life_w):
            if fd is not None:
                os.close(fd)
        raise
    os.close(ready_w)
    if life_r is not None:
        os.close(life_r)
    started = Started(name, config, process, life_w)
    ready = b""
    timed_out = False
    try:
        async with trio.lowlevel.FdStream(ready_r) as pipe:
            with trio.move_on_after(timeout) as scope:
                await trio.lowlevel.checkpoint_if_cancelled()
                while not ready.endswith(b"\n") and len(ready) < 100:
                    chunk = await pipe.receive_some(100)
                    if not chunk:
                        break
                    ready += chunk
            timed_out = scope.cancelled_caught
    finally:
        if ready != READY_LINE:
            with trio.CancelScope(shield=True):
                await _kill(process)
                started.close_lifeline()
            forget_pid(config, process.pid)  # killed after it wrote it, the file is stale
    if ready != READY_LINE:
        if timed_out:
            detail = f"it did not report listening within {timeout:g} s"
        else:
            detail = last_log_line(config)
        raise AmopError(f"{name} did not start: {detail} (log: {config.parent / LOG_FILE})")
    return started


def _resolved(path: Path) -> Path:
    return path.resolve()


async def _kill(process: trio.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


def exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# -- pid files ------------------------------------------------------------------------------


def write_pid_file(path: Path) -> None:
    """Write this process's pid to ``path`` (whole or not at all)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(f"{os.getpid()}\n", encoding="ascii")
    temporary.replace(path)


def remove_pid_file(path: Path) -> None:
    """Remove ``path`` if it still holds this process's pid."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text(encoding="ascii")) == os.getpid():
            path.unlink()


def forget_pid(config: Path, pid: int) -> None:
    """Remove the node's pid file if it names ``pid``, a process that has exited."""
    if _read_pid(config) == pid:
        with contextlib.suppress(OSError):
            (config.parent / PID_FILE).unlink()


def _read_pid(config: Path) -> int | None:
    try:
        pid = int((config.parent / PID_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def is_node_process(pid: int, config: Path) -> bool:
    """True if process ``pid`` is ``amop node`` running ``config`` (read from /proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    args = [os.fsdecode(arg) for arg in raw.split(b"\0") if arg]
    if not any(arg == "amop_trio" or Path(arg).name == "amop" for arg in args[:4]):
        return False
    if "node" not in args:
        return False
    rest = args[args.index("node") + 1 :]
    for i, arg in enumerate(rest):
        value = None
        if arg == "--config" and i + 1 < len(rest):
            value = rest[i + 1]
        elif arg.startswith("--config="):
            value = arg.removeprefix("--config=")
        if value is not None:
            return (cwd / value).resolve() == config.resolve()
    return False


def can_check_processes() -> bool:
    return Path("/proc/self/cmdline").exists()


def running_pid(config: Path) -> int | None:
    """The pid of the node of ``config`` if it runs (proven as in ``is_node_process``)."""
    pid = _read_pid(config)
    if pid is None or not is_node_process(pid, config):
        return None
    return pid


async def stop_node(config: Path, *, grace: float = STOP_GRACE) -> str:
    """Stop the node of ``config`` if it runs; a few words on what happened.

    SIGTERM, then SIGKILL after ``grace`` seconds. Only a process proven to
    be that node is ever signalled.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    config = _resolved(config)
    pid = _read_pid(config)
    if pid is None:
        return "not running"
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)  # pins the process: the number cannot be reused now
    try:
        if not is_node_process(pid, config):
            with contextlib.suppress(OSError):
                (config.parent / PID_FILE).unlink()
            return f"not running (removed the stale pid file naming {pid})"
        _signal(pid, pidfd, signal.SIGTERM)
        if await _wait_gone(pid, pidfd, grace):
            return f"stopped (pid {pid})"
        _signal(pid, pidfd, signal.SIGKILL)
        await _wait_gone(pid, pidfd, grace)
        return f"killed (pid {pid}): it did not stop within {grace:g} s of SIGTERM"
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _signal(pid: int, pidfd: int | None, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)


async def _wait_gone(pid: int, pidfd: int | None, timeout: float) -> bool:
    await trio.lowlevel.checkpoint_if_cancelled()
    with trio.move_on_after(timeout):
        await trio.lowlevel.checkpoint_if_cancelled()
        if pidfd is not None:
            await trio.lowlevel.wait_readable(pidfd)
            return True
        while _alive(pid):  # noqa: ASYNC110 (no pidfd: nothing to wait on but polling)
            await trio.sleep(0.05)
        return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): it has exited all the same.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False
    return True
