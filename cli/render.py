"""How the CLI shows the stack's reports: rich tables, plain enough to read in CI logs."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from driftloop.infra.stack.process import ProcessRecord
from driftloop.infra.stack.stack import THROUGHPUT_WINDOW_S, StackStatus, UpReport


def show_up(console: Console, report: UpReport) -> None:
    for svc in report.services:
        where = f"pid {svc.pid}" if svc.pid else "not managed by driftloop"
        note = {
            "started": "started",
            "already running": "already running (started by an earlier `stack up`; `stack down` stops it)",
            "external": "external: provisioned only",
        }[svc.action]
        console.print(f"[bold]{svc.title}[/] {svc.address} ({where}, {svc.version}): {note}")
    topics = report.topics
    console.print(
        f"topics: {len(topics.created)} created, {len(topics.existing)} already there"
        + (f"; [yellow]partition counts differ from the settings: {topics.mismatched}[/]" if topics.mismatched else "")
    )
    schema = report.schema
    console.print(
        f"schema: {len(schema.applied)} migration(s) applied"
        + (f" ({', '.join(schema.applied)})" if schema.applied else "")
        + f", {len(schema.already_applied)} already applied"
    )


def show_down(console: Console, stopped: list[ProcessRecord]) -> None:
    if not stopped:
        console.print("nothing to stop: no server started by `driftloop stack up` runs from this home")
    for record in stopped:
        console.print(f"stopped {record.name} (pid {record.pid}, {record.host}:{record.port})")


def show_status(console: Console, status: StackStatus) -> None:
    services = Table(title=f"driftloop stack ({status.home})", title_justify="left")
    for column in ("service", "mode", "address", "pid", "state", "version", "detail"):
        services.add_column(column)
    for svc in status.services:
        state = "[green]up[/]" if svc.up else "[red]down[/]"
        services.add_row(svc.title, svc.mode, svc.address, str(svc.pid or "-"), state, svc.version, svc.detail)
    console.print(services)

    if status.topics is not None:
        topics = Table(title="topics", title_justify="left")
        topics.add_column("topic")
        topics.add_column("partitions", justify="right")
        for name, count in sorted(status.topics.items()):
            mark = (
                "" if count == status.expected_partitions else f" [yellow](settings: {status.expected_partitions})[/]"
            )
            topics.add_row(name, f"{count}{mark}")
        if not status.topics:
            topics.add_row("[yellow]none: run `driftloop stack up` to provision[/]", "")
        console.print(topics)

    if status.tables is not None:
        tables = Table(title=f"ClickHouse database {status.database}", title_justify="left")
        tables.add_column("table")
        tables.add_column("rows stored", justify="right")
        tables.add_column("bytes", justify="right")
        for table in status.tables:
            tables.add_row(table.name, f"{table.rows:,}", f"{table.bytes:,}")
        if not status.tables:
            tables.add_row("[yellow]no tables: run `driftloop stack up` to provision[/]", "", "")
        console.print(tables)

    if status.lag or status.throughput is not None:
        flow = Table(title="flow", title_justify="left")
        for column in ("consumer group", "topic", "messages", "committed", "lag"):
            flow.add_column(column, justify="left" if column in {"consumer group", "topic"} else "right")
        for lag in status.lag:
            committed = f"{lag.committed:,}" if lag.started else "[dim]never[/]"
            flow.add_row(lag.group, lag.topic, f"{lag.end:,}", committed, f"{lag.lag:,}")
        console.print(flow)
        if status.throughput is not None:
            window = THROUGHPUT_WINDOW_S
            rates = ", ".join(f"{table} {rows / window:,.1f}/s" for table, rows in status.throughput.items())
            console.print(f"rows written in the last {window} s: {rates}")
