"""Developer tasks: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s demo``."""

from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, as CI runs it."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint rules, formatting) and flake8-async (Trio's cancel-point rules)."""
    session.install("ruff", "flake8-async")
    session.run("ruff", "check", "amop_trio", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "amop_trio", "examples", "noxfile.py")
    # Every public async call is a cancel point: ASYNC910-913 and ASYNC120 are opt-in
    # rules, enabled here on purpose. ASYNC109: publish(timeout=...) mirrors the FISCO
    # SDKs' API. A deliberate exception carries a noqa that says why.
    session.run(
        "flake8-async",
        "--enable=ASYNC,ASYNC910,ASYNC911,ASYNC912,ASYNC913,ASYNC120",
        "--disable=ASYNC109",
        "--startable-in-context-manager=serve",
        "--no-checkpoint-warning-decorators=frame_handler",
        *[str(p) for p in Path("amop_trio").rglob("*.py")],
    )


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the library and its tests."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """A node, a subscriber and both kinds of publisher, in one process."""
    session.install("-e", ".")
    session.run("amop", "demo")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark in one run, beside its floors and, where installed, its peers."""
    session.install("-e", ".[test]", "matplotlib")
    session.run("python", "benchmarks/run.py", *session.posargs)
