"""What a user installs: lazy cryptography, typing marker, licence, metadata, benchmark script."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from typing import Any

import amop_trio

from .cli import REPO, lines, run


async def test_importing_the_package_does_not_load_cryptography() -> None:
    code = (
        "import sys, amop_trio; print('cryptography' in sys.modules); "
        "amop_trio.CertificateError; print('cryptography' in sys.modules)"
    )
    result = await run([sys.executable, "-c", code])
    assert lines(result.stdout) == ["False", "True"], lines(result.stderr)


def test_the_package_is_typed_and_licensed() -> None:
    assert (Path(amop_trio.__file__).parent / "py.typed").is_file()
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence
    assert "Version 2.0, January 2004" in licence
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert "LICENSE" in project["license-files"]
    assert "Typing :: Typed" in project["classifiers"]
    assert "Framework :: Trio" in project["classifiers"]
    assert project["urls"]["Homepage"] == "https://github.com/amop-trio/amop_trio"
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in package_data["package-data"]["amop_trio"]


async def test_benchmark_help_needs_nothing_beyond_the_package() -> None:
    """`pip install -e .` without the test extras is enough for `run.py --help`."""
    blocked = ["trio_websocket", "matplotlib", "hypothesis", "pytest", "nats", "redis", "paho"]
    code = (
        "import runpy, sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        "sys.argv = ['benchmarks/run.py', '--help']\n"
        "runpy.run_path('benchmarks/run.py', run_name='__main__')\n"
    )
    result = await run([sys.executable, "-c", code])
    assert result.returncode == 0, lines(result.stderr)
    assert "usage: run.py" in result.stdout.decode()
    missing = await run([sys.executable, "-c", code.replace("'--help'", "'--only', 'floors'")])
    assert missing.returncode == 1
    assert lines(missing.stderr) == [
        "run.py: trio_websocket is not installed; the benchmarks need the test extras: "
        "pip install -e '.[test]'"
    ]


def _benchmark_run() -> Any:
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "benchmarks" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_plotted_series_gets_its_own_style() -> None:
    run_py = _benchmark_run()
    labels = [f"system {i}" for i in range(45)]
    styles = run_py.series_styles(labels)
    assert len(set(styles.values())) == len(labels)
    assert run_py.series_styles(list(reversed(labels))) == styles  # stable per label
    assert len({colour for colour, _ in list(styles.values())[:20]}) == 20


def test_plots_use_distinct_colours_and_keep_legends_off_the_data() -> None:
    run_py = _benchmark_run()
    h = run_py.h
    results = []
    for i in range(12):  # more series than matplotlib's default ten colours
        samples = [100_000 + 1000 * i + j for j in range(50)]
        results.append(h.Result(f"system{i}", h.SIDE_BY_SIDE, 256, {}, samples_ns=samples))
        results.append(h.Result(f"system{i}", "rtt", 256, {}, samples_ns=samples))
        results.append(
            h.Result(
                f"system{i}",
                "one-way 1→1",
                2**i,
                {"msg_per_s": 1000.0 + i, "MB_per_s": 1.0 + i},
                kind=h.THROUGHPUT,
            )
        )
    figures = run_py.build_figures(results)
    assert set(figures) == {"latency_cdf.png", "throughput_vs_payload.png"}
    for name, fig in figures.items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            styles = [(line.get_color(), line.get_linestyle()) for line in ax.lines]
            assert len(set(styles)) == len(styles) == 12, name
            legends = [ax.get_legend(), *fig.legends]
            box = ax.get_window_extent(renderer)
            for legend in legends:
                if legend is not None:
                    assert not legend.get_window_extent(renderer).overlaps(box), name
    import matplotlib.pyplot as plt

    plt.close("all")
