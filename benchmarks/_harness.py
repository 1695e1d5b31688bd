"""Shared timing helpers for the benchmark suite: no dependencies beyond the stdlib.

Every figure in the suite, floors, amop_trio and peers alike, goes through the
same code here: samples are ``time.perf_counter_ns()`` differences, summaries
are nearest-rank percentiles in microseconds, and every result is a ``Result``
record that the table printer, the JSON writer and the plots understand.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
LATEST_JSON = RESULTS_DIR / "latest.json"

#: Kinds of result, each printed as its own table.
LATENCY = "latency"
THROUGHPUT = "throughput"
COST = "cost"
MEMORY = "memory"

KIB = 1024
#: The side-by-side section's scenario, and its amop_trio systems: the node in the
#: benchmark process; in a process of its own; and that with busy polling.
SIDE_BY_SIDE = "rtt side by side"
AMOP = "amop_trio"
NODE_PROCESS = "amop_trio (node process)"
BUSY_POLL_US = 50
NODE_PROCESS_BUSY = f"amop_trio (node process, busy poll {BUSY_POLL_US} µs)"
#: Each amop_trio system of the side-by-side section, with the name of its ratio column.
SIDE_AMOP_SYSTEMS = {
    AMOP: "amop_trio vs",
    NODE_PROCESS: "node process vs",
    NODE_PROCESS_BUSY: "busy poll vs",
}
#: Quantile points kept per latency result for CDF plots and the JSON file.
CDF_POINTS = 200


# -- statistics ----------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize_ns(samples_ns: Iterable[int]) -> dict[str, float]:
    """p50/p90/p99/max/mean in microseconds, and the sample count, of ns samples."""
    values = sorted(samples_ns)
    if not values:
        return {"n": 0}
    us = 1e-3
    return {
        "p50_us": percentile(values, 50) * us,
        "p90_us": percentile(values, 90) * us,
        "p99_us": percentile(values, 99) * us,
        "max_us": values[-1] * us,
        "mean_us": sum(values) / len(values) * us,
        "n": len(values),
    }


def cdf_points(samples_ns: Sequence[int], points: int = CDF_POINTS) -> list[list[float]]:
    """Up to ``points`` (latency µs, cumulative fraction) pairs: a CDF small enough for JSON."""
    values = sorted(samples_ns)
    n = len(values)
    if n == 0:
        return []
    step = max(1, n // points)
    picked = list(range(step - 1, n, step))
    if picked[-1] != n - 1:
        picked.append(n - 1)
    return [[round(values[i] / 1e3, 2), round((i + 1) / n, 5)] for i in picked]


def rate(count: int, elapsed_ns: int) -> float:
    """Events per second."""
    return count / (elapsed_ns / 1e9) if elapsed_ns > 0 else math.nan


# -- records ---------------------------------------------------------------------


@dataclass
class Result:
    """One measured figure set.

    ``system`` is who was measured (``floor:tcp``, ``amop_trio``, ``nats``, …);
    ``scenario`` says what was done; ``payload`` is the application payload in
    bytes (None where it makes no sense); ``figures`` holds the numbers.
    ``hops`` is how many brokers/nodes a message crosses (0 = direct), used to
    match a result with its floor. ``samples_ns`` keeps raw latencies in memory
    for plots; only a CDF summary of them is written to JSON.
    """

    system: str
    scenario: str
    payload: int | None
    figures: dict[str, Any]
    kind: str = LATENCY
    hops: int | None = None
    note: str = ""
    samples_ns: list[int] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "system": self.system,
            "scenario": self.scenario,
            "payload": self.payload,
            "kind": self.kind,
            "hops": self.hops,
            "figures": self.figures,
        }
        if self.note:
            out["note"] = self.note
        if self.samples_ns:
            out["cdf_us"] = cdf_points(self.samples_ns)
        return out


def latency_result(
    system: str,
    scenario: str,
    payload: int | None,
    samples_ns: list[int],
    *,
    hops: int | None = None,
    extra: dict[str, Any] | None = None,
    note: str = "",
) -> Result:
    figures = summarize_ns(samples_ns)
    if extra:
        figures.update(extra)
    return Result(system, scenario, payload, figures, LATENCY, hops, note, samples_ns)


def fmt_payload(payload: int | None) -> str:
    if payload is None:
        return "-"
    if payload >= KIB and payload % KIB == 0:
        return f"{payload // KIB} KiB"
    return f"{payload} B"


# -- output ----------------------------------------------------------------------


def _fmt_num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain monospace table; numbers right-aligned, text left-aligned."""
    cells = [[_fmt_num(v) if not isinstance(v, str) else v for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        all(not isinstance(row[i], str) or row[i] in ("-", "") for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), sep, *(line(r) for r in cells)])


def print_table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], out: Any = None
) -> None:
    out = out or sys.stdout
    print(f"\n== {title} ==", file=out)
    if rows:
        print(format_table(headers, rows), file=out)
    else:
        print("(nothing measured)", file=out)
    out.flush()


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "hostname": socket.gethostname(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    for module in ("trio", "trio_websocket", "wsproto", "amop_trio"):
        try:
            info[module] = __import__(module).__version__
        except Exception:
            info[module] = None
    return info


def write_json(
    results: Sequence[Result],
    path: Path = LATEST_JSON,
    *,
    extra: dict[str, Any] | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"environment": environment(), "results": [r.to_json() for r in results]}
    if extra:
        doc.update(extra)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def note(text: str) -> None:
    """A line for the person watching, on stderr."""
    print(text, file=sys.stderr, flush=True)


# -- progress --------------------------------------------------------------------


class Progress:
    """A text progress bar on stderr, redrawn at most every 0.1 s.

    Uses tqdm when it is installed and stderr is a terminal; otherwise draws
    its own bar (on a terminal) or prints one line when done (when piped).
    Call ``update`` outside the timed region of a loop.
    """

    def __init__(self, label: str, total: int, *, enabled: bool = True) -> None:
        self.label = label
        self.total = max(1, total)
        self.done = 0
        self._tty = sys.stderr.isatty()
        self._enabled = enabled
        self._last_draw = 0.0
        self._start = time.perf_counter()
        self._tqdm: Any = None
        if enabled and self._tty:
            try:
                from tqdm import tqdm  # type: ignore[import-untyped]
            except ImportError:
                pass
            else:
                self._tqdm = tqdm(
                    total=total, desc=label, file=sys.stderr, leave=False, mininterval=0.1
                )

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self._enabled:
            return
        if self._tqdm is not None:
            self._tqdm.update(n)
            return
        if not self._tty:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.1 and self.done < self.total:
            return
        self._last_draw = now
        width = 30
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * width)
        sys.stderr.write(
            f"\r  {self.label[:40]:<40} [{bar:<{width}}] {self.done:>7}/{self.total} "
            f"{now - self._start:5.1f}s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if not self._enabled:
            return
        elapsed = time.perf_counter() - self._start
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._tty:
            sys.stderr.write("\r" + " " * 100 + "\r")
        sys.stderr.write(f"  {self.label}: {self.done} in {elapsed:.1f}s\n")
        sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- bounded loops -----------------------------------------------------------------


class Budget:
    """At most ``count`` iterations and at most ``seconds`` of wall time, whichever ends first."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count = count
        self.seconds = seconds
        self.deadline_ns = time.perf_counter_ns() + int(seconds * 1e9)
        self.used = 0

    def take(self) -> bool:
        """True if one more iteration is allowed (and counts it)."""
        if self.used >= self.count or time.perf_counter_ns() >= self.deadline_ns:
            return False
        self.used += 1
        return True

    @property
    def timed_out(self) -> bool:
        return self.used < self.count and time.perf_counter_ns() >= self.deadline_ns


# -- process helpers ----------------------------------------------------------------


def raise_nofile(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (capped by the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for servers that cannot listen on port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float) -> bool:
    """Wait until something accepts TCP connections on host:port; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, VmSize and Threads of a process from /proc, in KiB (Threads: count)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize", "Threads"):
            out[key] = int(value.split()[0])
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds a process used, from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# -- settings and loops shared by every system ---------------------------------------


@dataclass(frozen=True)
class Settings:
    """Counts and time limits of one run; ``QUICK`` is for smoke tests."""

    rtt_warmup: int = 200
    rtt_count: int = 2000
    rtt_seconds: float = 15.0
    inflight: int = 64
    inflight_count: int = 10_000
    inflight_seconds: float = 8.0
    throughput_count: int = 20_000
    throughput_seconds: float = 5.0
    throughput_payloads: tuple[int, ...] = (256, 4 * KIB, 16 * KIB)
    rtt_payloads: tuple[int, ...] = (256, 16 * KIB)
    multicast_subscribers: tuple[int, ...] = (1, 10)
    drain_seconds: float = 5.0
    fanout_clients: int = 1000
    fanout_rounds: int = 5
    codec_iterations: int = 100_000
    memory_clients: int = 1000
    flood_count: int = 100_000
    flood_seconds: float = 40.0
    flood_window: int = 16
    #: Interleaved rounds of the side-by-side round trip (``rtt_count`` split among them).
    side_rounds: int = 10
    progress: bool = True
    quick: bool = False


QUICK = Settings(
    rtt_warmup=20,
    rtt_count=200,
    rtt_seconds=3.0,
    inflight_count=1000,
    inflight_seconds=2.0,
    throughput_count=2000,
    throughput_seconds=1.0,
    throughput_payloads=(256, 16 * KIB),
    drain_seconds=2.0,
    fanout_clients=100,
    fanout_rounds=2,
    codec_iterations=5_000,
    memory_clients=100,
    flood_count=3_000,
    flood_seconds=5.0,
    side_rounds=2,
    quick=True,
)


async def measure_sequential(
    label: str,
    roundtrip: Any,
    settings: Settings,
    *,
    warmup: int | None = None,
    count: int | None = None,
) -> list[int]:
    """Time ``await roundtrip()`` one after another: warm-up first, then bounded samples (ns).

    Works under any event loop (Trio or asyncio): it only awaits ``roundtrip``.
    """
    warmup = settings.rtt_warmup if warmup is None else warmup
    count = settings.rtt_count if count is None else count
    clock = time.perf_counter_ns
    warm = Budget(warmup, settings.rtt_seconds / 4)
    while warm.take():
        await roundtrip()
    samples: list[int] = []
    budget = Budget(count, settings.rtt_seconds)
    with Progress(label, count, enabled=settings.progress) as bar:
        while budget.take():
            start = clock()
            await roundtrip()
            samples.append(clock() - start)
            bar.update()
    return samples


class GcWatch:
    """Counts this process's garbage collections and their pauses while the block runs."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.setdefault(info["generation"], []).append(time.perf_counter() - self._start)

    def __enter__(self) -> GcWatch:
        import gc

        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        gc.callbacks.remove(self._callback)

    def figures(self) -> dict[str, Any]:
        full = self.pauses.get(2, [])
        return {
            "gc_full_collections": len(full),
            "gc_full_max_ms": max(full) * 1e3 if full else 0.0,
            "gc_all_ms": sum(sum(v) for v in self.pauses.values()) * 1e3,
        }
