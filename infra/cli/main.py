"""``driftloop``: the command line of the whole system.

Verbs of other packages are imported inside the command that runs them, so importing ``infra`` never
imports ``streams``, ``retrain`` or ``models``, and the CLI starts fast.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console

from infra.errors import DriftloopError
from infra.logs import configure_logging
from infra.settings import Settings

console = Console(highlight=False)


class DriftloopGroup(click.Group):
    """A click group that turns a ``DriftloopError`` into one clear message and exit status 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except DriftloopError as exc:
            raise click.ClickException(str(exc)) from None


def _settings(ctx: click.Context) -> Settings:
    return ctx.find_root().obj  # type: ignore[no-any-return]


@click.group(cls=DriftloopGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="driftloop")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """driftloop keeps machine-learning models healthy in production.

    Settings come from DRIFTLOOP_* environment variables (`driftloop settings` lists them).
    """
    try:
        ctx.obj = Settings.from_env()
    except DriftloopError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(ctx.obj.log_level, ctx.obj.log_format)


@cli.command("settings")
@click.pass_context
def settings_cmd(ctx: click.Context) -> None:
    """Show the effective settings (secrets masked)."""
    for name, value in _settings(ctx).redacted().items():
        console.print(f"{name}={value}")


@cli.group(cls=DriftloopGroup)
def stack() -> None:
    """The local stack: a Kafka-protocol broker and a ClickHouse server on this machine."""


@stack.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Start the embedded broker and ClickHouse (if not running), then create topics and tables."""
    from infra.cli.render import show_up
    from infra.stack.stack import up

    with console.status("starting the local stack ..."):
        report = up(_settings(ctx))
    show_up(console, report)


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop the servers `stack up` started from this home (and nothing else)."""
    from infra.cli.render import show_down
    from infra.stack.stack import down

    show_down(console, down(_settings(ctx)))


@stack.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """Show what runs where: pids, ports, versions, topics, table row counts. Exit 1 if a service is down."""
    from infra.cli.render import show_status
    from infra.stack.stack import status

    report = status(_settings(ctx))
    show_status(console, report)
    if not report.healthy:
        ctx.exit(1)


@cli.command("worker")
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the streams worker: ingest predictions and outcomes, join them, feed the detectors."""
    from streams.worker import run_worker

    settings = _settings(ctx)
    console.print(
        f"driftloop worker: {settings.topics.predictions} + {settings.topics.outcomes} "
        f"({settings.kafka_bootstrap}) → {settings.clickhouse}; Ctrl-C stops it",
        style="dim",
    )
    run_worker(settings)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="driftloop"))


if __name__ == "__main__":
    main()
