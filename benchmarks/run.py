"""Run the whole benchmark suite: floors, amop_trio, peers, side by side; print, save, plot.

    python benchmarks/run.py                  # everything (a few minutes)
    python benchmarks/run.py --quick          # small counts, a smoke test (well under 60 s)
    python benchmarks/run.py --only floors,amop
    python benchmarks/run.py --only side      # the interleaved round-trip comparison alone

Every amop_trio (and peer) figure is shown next to its floor: request/reply
latency through N nodes against the trio-websocket forwarder with N hops,
throughput against the forwarder's one-way throughput for the same payload.
Results go to benchmarks/results/latest.json, plots (if matplotlib is
installed) to benchmarks/results/*.png.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _harness as h  # noqa: E402
import trio  # noqa: E402

SECTIONS = ("floors", "amop", "peers", "side")


# -- matching a figure with its floor --------------------------------------------------------


def base_scenario(scenario: str) -> str:
    """``rtt@64 (2 nodes)`` -> ``rtt@64``."""
    return scenario.split(" (")[0]


def find_floor(result: h.Result, floors: list[h.Result]) -> h.Result | None:
    """The floor a result is compared with, or None."""
    if result.system.startswith("floor:"):
        return None
    base = base_scenario(result.scenario)
    if result.kind == h.LATENCY and base.startswith("rtt") and result.hops:
        system, scenario = f"floor:fwd-{result.hops}hop", base
    elif result.kind == h.THROUGHPUT:
        system, scenario = "floor:fwd-1hop", "one-way 1→1"
    else:
        return None
    for floor in floors:
        if (floor.system, floor.scenario, floor.payload) == (system, scenario, result.payload):
            return floor
    return None


def ratio(result: h.Result, floor: h.Result | None) -> float | None:
    """Latency: p50 / floor p50 (>1 = slower). Throughput: msg/s / floor msg/s (<1 = slower)."""
    if floor is None:
        return None
    key = "p50_us" if result.kind == h.LATENCY else "msg_per_s"
    mine, theirs = result.figures.get(key), floor.figures.get(key)
    if not mine or not theirs or math.isnan(mine) or math.isnan(theirs):
        return None
    return float(mine) / float(theirs)


def fmt_ratio(result: h.Result, floors: list[h.Result]) -> str:
    if result.system.startswith("floor:"):
        return "(floor)"
    floor = find_floor(result, floors)
    value = ratio(result, floor)
    if value is None:
        return "-"
    assert floor is not None
    return f"{value:.2f}x {floor.system.removeprefix('floor:')}"


# -- tables ------------------------------------------------------------------------------------


def print_report(results: list[h.Result], notes: list[str]) -> None:
    floors = [r for r in results if r.system.startswith("floor:")]

    rows = []
    for r in results:
        if r.kind != h.LATENCY:
            continue
        f = r.figures
        extra = ""
        if "all_received_us" in f:
            extra = (
                f"all {f['subscribers']} received in {f['all_received_us'] / 1e3:.1f} ms "
                f"(median of {f['rounds']}), lost {f['lost']}, connect {f['connect_s']:.1f} s"
            )
            if f.get("gc_full_collections"):
                extra += (
                    f"; {f['gc_full_collections']} full GCs in this process, "
                    f"longest {f['gc_full_max_ms']:.0f} ms"
                )
        if f.get("errors"):
            extra = f"errors {f['errors']}"
        if f.get("client_errors"):
            extra += f"; client errors {f['client_errors']}"
        rows.append(
            [
                r.system,
                r.scenario,
                h.fmt_payload(r.payload),
                f.get("p50_us"),
                f.get("p90_us"),
                f.get("p99_us"),
                f.get("max_us"),
                f.get("n"),
                f.get("req_per_s"),
                fmt_ratio(r, floors),
                extra,
            ]
        )
    h.print_table(
        "latency: request/reply round trip and fan-out, µs "
        "(vs floor = p50 / floor p50; >1 is slower)",
        [
            "system",
            "scenario",
            "payload",
            "p50",
            "p90",
            "p99",
            "max",
            "n",
            "req/s",
            "vs floor",
            "",
        ],
        rows,
    )

    rows = []
    for r in results:
        if r.kind != h.THROUGHPUT:
            continue
        f = r.figures
        rows.append(
            [
                r.system,
                r.scenario,
                h.fmt_payload(r.payload),
                f.get("msg_per_s"),
                f.get("MB_per_s"),
                f.get("sent"),
                f.get("lost"),
                f.get("elapsed_s"),
                fmt_ratio(r, floors),
                "time-limited" if f.get("time_limited") else "",
            ]
        )
    h.print_table(
        "throughput: one way, first send to last message received by every subscriber "
        "(vs floor = msg/s / floor msg/s; <1 is slower)",
        ["system", "scenario", "payload", "msg/s", "MB/s", "sent", "lost", "s", "vs floor", ""],
        rows,
    )

    side = [r for r in results if r.scenario == h.SIDE_BY_SIDE]
    found = {r.system: r for r in side}
    ours = {name: found[name] for name in h.SIDE_AMOP_SYSTEMS if name in found}
    columns = [h.SIDE_AMOP_SYSTEMS[name] for name in ours]
    rows = []
    for r in side:
        f = r.figures
        versus = [
            "-" if mine is r else f"{mine.figures['p50_us'] / f['p50_us']:.2f}x"
            for mine in ours.values()
        ]
        rows.append(
            [
                r.system,
                f.get("p50_us"),
                f.get("p90_us"),
                f.get("p99_us"),
                f.get("n"),
                f"{f.get('rounds_won')}/{f.get('rounds')}",
                *versus,
            ]
        )
    h.print_table(
        "side by side: 256 B unicast round trip, µs, interleaved rounds "
        "(each amop_trio system's p50 / the row's p50; <1 means that amop_trio is faster)",
        ["system", "p50", "p90", "p99", "n", "rounds won", *columns],
        rows,
    )

    rows = [
        [r.system, r.scenario, h.fmt_payload(r.payload), r.figures.get("ns_per_frame")]
        for r in results
        if r.kind == h.COST
    ]
    h.print_table("codec cost, ns per frame", ["system", "scenario", "payload", "ns"], rows)

    for r in results:
        if r.kind == h.MEMORY:
            h.print_table(
                f"{r.system} {r.scenario}",
                ["figure", "value"],
                [[k, v] for k, v in r.figures.items()],
            )
    if notes:
        print("\nnotes:")
        for text in notes:
            print(f"  {text}")
    sys.stdout.flush()


# -- plots -------------------------------------------------------------------------------------

#: Twenty colours that stay apart from each other (matplotlib's tab20, dark shades first).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip
#: Dash patterns taken in turn once the palette has gone round.
DASHES = ("-", "--", "-.", ":")


def series_styles(labels: list[str]) -> dict[str, tuple[str, str]]:
    """A (colour, line style) per label, no two alike; the same label always gets the same."""
    ordered = sorted(dict.fromkeys(labels))
    return {
        label: (PALETTE[i % len(PALETTE)], DASHES[i // len(PALETTE) % len(DASHES)])
        for i, label in enumerate(ordered)
    }


def legend_below(ax: Any, columns: int = 2) -> Any:
    """A legend under the axes, where it cannot cover a data point."""
    return ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=columns,
        fontsize=7,
        frameon=False,
    )


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")  # "tight" keeps the legends in the picture
    plt.close(fig)
    return path


def write_plots(results: list[h.Result], out_dir: Path) -> list[Path]:
    """PNG plots, if matplotlib is importable; the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        h.note("plots: matplotlib is not installed; no PNGs written (pip install matplotlib)")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = build_figures(results)
    return [_save(fig, out_dir / name) for name, fig in figures.items()]


def build_figures(results: list[h.Result]) -> dict[str, Any]:
    """The figures to save, by file name; a section that did not run draws none."""
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}

    # 1. Latency CDF of sequential request/reply, 256 B, per system: each in its own
    #    section (left), and in interleaved rounds (right).
    curves: list[tuple[Any, str, list[float]]] = []
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), sharex=True)
    for r in results:
        if r.kind != h.LATENCY or r.payload != 256 or not r.samples_ns:
            continue
        if r.scenario == h.SIDE_BY_SIDE:
            ax, label = right, r.system
        elif base_scenario(r.scenario) == "rtt":
            ax = left
            label = r.system if r.scenario == "rtt" else f"{r.system} {r.scenario}"
        else:
            continue
        curves.append((ax, label, sorted(s / 1e3 for s in r.samples_ns)))
    styles = series_styles([label for _, label, _ in curves])
    for ax, label, values in curves:
        n = len(values)
        colour, dash = styles[label]
        ax.plot(values, [(i + 1) / n for i in range(n)], label=label, color=colour, ls=dash)
    for ax, title in (
        (left, "each system in its own section"),
        (right, "side by side, interleaved rounds"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("round trip, µs (log)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            legend_below(ax)
    fig.suptitle("request/reply latency CDF, 256 B, one request at a time")
    figures["latency_cdf.png"] = fig

    # 2. RTT against hops: the trio-websocket floor and amop_trio per topology.
    series: dict[str, list[tuple[int, float, float]]] = {}
    for r in results:
        if r.kind != h.LATENCY or base_scenario(r.scenario) != "rtt" or r.hops is None:
            continue
        if r.system == "floor:tcp":
            continue
        if r.system.startswith("floor:"):
            name = "trio-websocket floor"
        elif r.system == "amop_trio":
            name = "amop_trio"
        else:
            continue
        key = f"{name}, {h.fmt_payload(r.payload)}"
        series.setdefault(key, []).append((r.hops, r.figures["p50_us"], r.figures["p99_us"]))
    if series:  # a run without this section leaves its plot alone
        fig, ax = plt.subplots(figsize=(7, 5.5))
        styles = series_styles(list(series))
        for key, points in sorted(series.items()):
            points.sort()
            xs = [p[0] for p in points]
            colour = styles[key][0]
            ax.plot(xs, [p[1] for p in points], marker="o", color=colour, label=f"{key} p50")
            ax.plot(
                xs,
                [p[2] for p in points],
                linestyle=":",
                marker=".",
                color=colour,
                label=f"{key} p99",
            )
        ax.set_xlabel("brokers / nodes crossed (0 = direct echo)")
        ax.set_ylabel("round trip, µs")
        ax.set_title("request/reply RTT against hops")
        ax.set_xticks(sorted({p[0] for pts in series.values() for p in pts}) or [0])
        ax.grid(True, alpha=0.3)
        legend_below(ax)
        figures["rtt_vs_hops.png"] = fig

    # 3. Throughput against payload size.
    lines: dict[str, list[tuple[int, float, float]]] = {}
    for r in results:
        if r.kind != h.THROUGHPUT or r.payload is None:
            continue
        key = f"{r.system} {r.scenario}"
        lines.setdefault(key, []).append(
            (r.payload, r.figures.get("msg_per_s", math.nan), r.figures.get("MB_per_s", math.nan))
        )
    if lines:  # a run without this section leaves its plot alone
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 5.5))
        styles = series_styles(list(lines))
        for key, points in sorted(lines.items()):
            points.sort()
            xs = [p[0] for p in points]
            colour, dash = styles[key]
            ax1.plot(xs, [p[1] for p in points], marker="o", color=colour, ls=dash, label=key)
            ax2.plot(xs, [p[2] for p in points], marker="o", color=colour, ls=dash, label=key)
        for ax, ylabel in ((ax1, "messages / s (published)"), (ax2, "MB / s (delivered)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("payload, bytes")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        # One legend for both panels, below them.
        fig.legend(
            *ax1.get_legend_handles_labels(),
            loc="upper center",
            bbox_to_anchor=(0.5, 0.02),
            ncol=3,
            fontsize=7,
            frameon=False,
        )
        fig.suptitle("one-way throughput against payload size")
        figures["throughput_vs_payload.png"] = fig
    return figures


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small counts: a smoke test in well under 60 s"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help="comma-separated sections to run: floors,amop,peers,side (default: all)",
    )
    parser.add_argument(
        "--topologies",
        default=None,
        help="comma-separated amop topologies (default: all in amop.TOPOLOGIES)",
    )
    parser.add_argument("--json", type=Path, default=h.LATEST_JSON, help="where to write results")
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ImportError as exc:
        print(
            f"run.py: {exc.name or exc} is not installed; the benchmarks need the test "
            "extras: pip install -e '.[test]'",
            file=sys.stderr,
        )
        return 1


def run(args: argparse.Namespace) -> int:
    settings = h.QUICK if args.quick else h.Settings()
    if args.no_progress:
        from dataclasses import replace

        settings = replace(settings, progress=False)
    results: list[h.Result] = []
    notes: list[str] = []
    started = time.monotonic()

    if "floors" in args.sections:
        import floors

        results += trio.run(floors.run_floors, settings)
    if "amop" in args.sections:
        import amop

        names = None
        if args.topologies:
            names = [n.strip() for n in args.topologies.split(",")]
            missing = [n for n in names if n not in amop.TOPOLOGIES]
            if missing:
                print(f"unknown topologies: {missing}; known: {list(amop.TOPOLOGIES)}")
                return 2
        results += trio.run(amop.run_amop, settings, names)
    if "peers" in args.sections:
        import peers

        peer_results, peer_notes = peers.run_peers(settings)
        results += peer_results
        notes += peer_notes
    if "side" in args.sections:
        import side_by_side

        side_results, side_notes = side_by_side.run_side_by_side(settings)
        results += side_results
        notes += side_notes

    elapsed = time.monotonic() - started
    notes.append(f"{'quick' if args.quick else 'full'} run took {elapsed:.0f} s")
    print_report(results, notes)
    extra: dict[str, Any] = {
        "settings": {k: v for k, v in vars(settings).items()},
        "notes": notes,
        "ratios": [
            {
                "system": r.system,
                "scenario": r.scenario,
                "payload": r.payload,
                "floor": f.system + " " + f.scenario,
                "ratio": ratio(r, f),
            }
            for r in results
            if (f := find_floor(r, [x for x in results if x.system.startswith("floor:")]))
        ],
    }
    path = h.write_json(results, args.json, extra=extra)
    print(f"\nresults written to {path}")
    if not args.no_plots:
        for png in write_plots(results, args.json.parent):
            print(f"plot written to {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
