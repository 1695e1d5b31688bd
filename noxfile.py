"""Developer tasks: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s demo``."""

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
    """ruff: lint rules and formatting."""
    session.install("ruff")
    session.run("ruff", "check", "amop_trio", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "amop_trio", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the library."""
    session.install("-e", ".", "mypy")
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
