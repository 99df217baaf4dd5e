"""``driftloop``: the command line of the whole system.

Verbs of other packages are imported inside the command that runs them, so importing ``infra`` never
imports ``streams``, ``retrain`` or ``models``, and the CLI starts fast.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape as as_text  # a text that is data: its [brackets] are not markup

from driftloop.infra.contract import finite_json
from driftloop.infra.errors import DriftloopError
from driftloop.infra.logs import configure_logging
from driftloop.infra.settings import Settings

if TYPE_CHECKING:
    from driftloop.infra.contract import Alert
    from driftloop.streams.drift.subscribers import WebhookForwarder

# In a pipe or a log, tables keep their content whole instead of being squeezed into 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


class DriftloopGroup(click.Group):
    """A click group that turns a ``DriftloopError`` into one clear message and exit status 1, and so a client
    library's error that says a server does not answer, lacks the schema or refuses the login
    (:func:`~infra.service_errors.explain`): a command run while the stack is down says so, not a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except DriftloopError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            settings = ctx.find_root().obj
            if not isinstance(settings, Settings):
                raise
            from driftloop.infra.service_errors import explain  # the client libraries load only on an error

            clear = explain(exc, settings)
            if clear is None:
                raise
            raise click.ClickException(str(clear)) from None


def _settings(ctx: click.Context) -> Settings:
    return ctx.find_root().obj  # type: ignore[no-any-return]


def _json(value: object) -> str:
    """One line of strict JSON for scripts: paths, times and other objects as text, and a number that is not
    finite (NaN: none, as a first version's champion metric) as null; JSON has no NaN, and strict parsers
    (JavaScript's, jq's, Go's) refuse the ``NaN`` Python's ``json`` writes by default.

    >>> _json({"metric": float("nan"), "values": [1.5, float("inf")], "path": Path("/m")})
    '{"metric": null, "values": [1.5, null], "path": "/m"}'
    """
    import json

    return json.dumps(finite_json(value), default=str, allow_nan=False)


def _against(champion_metric: float, champion_version: int) -> str:
    """What a challenger was judged against: the champion's metric, no champion (a model's first version), or
    none offline (the champion could not be judged fairly: the version's reason says why)."""
    if not math.isnan(champion_metric):
        return f"champion {champion_metric:.4f}"
    return f"champion v{champion_version} not judged offline" if champion_version else "no champion"


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
@click.option("--json", "as_json", is_flag=True, help="One JSON object, variable → value, instead of lines.")
@click.pass_context
def settings_cmd(ctx: click.Context, as_json: bool) -> None:
    """Show the effective settings (secrets masked)."""
    shown = _settings(ctx).redacted()
    if as_json:
        click.echo(_json(shown))
        return
    for name, value in shown.items():
        console.print(f"{name}={value}")


@cli.group(cls=DriftloopGroup)
def stack() -> None:
    """The local stack: a Kafka-protocol broker and a ClickHouse server on this machine."""


@stack.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Start the embedded broker and ClickHouse (if not running), then create topics and tables."""
    from driftloop.cli.render import show_up
    from driftloop.infra.stack.stack import up

    with console.status("starting the local stack ..."):
        report = up(_settings(ctx))
    show_up(console, report)


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop the servers `stack up` started from this home (and nothing else)."""
    from driftloop.cli.render import show_down
    from driftloop.infra.stack.stack import down

    show_down(console, down(_settings(ctx)))


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="The whole status as one JSON object instead of tables.")
@click.pass_context
def stack_status(ctx: click.Context, as_json: bool) -> None:
    """Show what runs where: pids, ports, versions, topics, table row counts. Exit 1 if a service is down."""
    import dataclasses

    from driftloop.cli.render import show_status
    from driftloop.infra.stack.stack import status

    report = status(_settings(ctx))
    if as_json:
        click.echo(_json(dataclasses.asdict(report) | {"healthy": report.healthy}))
    else:
        show_status(console, report)
    if not report.healthy:
        ctx.exit(1)


@cli.command("worker")
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the streams worker: ingest predictions and outcomes, join them, feed the detectors."""
    from driftloop.streams.supervisor import run_worker

    settings = _settings(ctx)
    console.print(
        f"driftloop worker: {settings.topics.predictions} + {settings.topics.outcomes} "
        f"({settings.kafka_bootstrap}) → {settings.clickhouse}; Ctrl-C stops it",
        style="dim",
    )
    ctx.exit(run_worker(settings))


@cli.group(cls=DriftloopGroup)
def alerts() -> None:
    """Drift alerts: follow them live, or forward them to webhooks."""


@alerts.command("tail")
@click.option("--model", "models", multiple=True, help="Only these models (repeatable).")
@click.option("--from-beginning", is_flag=True, help="Start with the oldest alert still on the topic.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of text.")
@click.pass_context
def alerts_tail(ctx: click.Context, models: tuple[str, ...], from_beginning: bool, as_json: bool) -> None:
    """Print alerts as they arrive (Ctrl-C stops)."""

    from driftloop.streams.drift.subscribers import alert_stream

    try:
        for alert, _ in alert_stream(_settings(ctx), from_beginning=from_beginning):
            if models and alert.model not in models:
                continue
            if as_json:
                click.echo(_json(alert.to_json()))
            else:
                console.print(alert_line(alert))
    except KeyboardInterrupt:
        pass


_SEVERITY_COLOURS = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def alert_line(alert: Alert) -> str:
    """An alert as ``alerts tail`` prints it (rich markup): its message as written, though feature names and
    request ids in it hold brackets (``price[usd]`` lost its ``[usd]``, and a ``[/]`` stopped the command)."""
    colour = _SEVERITY_COLOURS[alert.severity]
    return f"{alert.to_json()['event_ts']} [{colour}]{as_text(alert.message)}[/]  alert_id={alert.alert_id}"


def _destinations(command: Callable[..., None]) -> Callable[..., None]:
    """The options that say where a subscriber's alerts go (shared by ``alerts webhook`` and ``alerts resend``):
    the command gets ``name`` and, built from the rest, ``forwarder``."""

    @functools.wraps(command)
    def with_forwarder(
        *args: object,
        urls: tuple[str, ...],
        url_envs: tuple[str, ...],
        url_files: tuple[Path, ...],
        payload_format: str,
        routing_key_env: str | None,
        **kwargs: object,
    ) -> None:
        forwarder = _forwarder(urls, url_envs, url_files, payload_format, routing_key_env)
        command(*args, forwarder=forwarder, **kwargs)

    options = [
        click.argument("urls", nargs=-1),
        click.option("--name", help="The subscriber's name: its own consumer group, so that it gets every alert."),
        click.option("--url-env", "url_envs", multiple=True, help="An environment variable holding a webhook URL."),
        click.option(
            "--url-file",
            "url_files",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="A file of webhook URLs, one a line.",
        ),
        click.option(
            "--format",
            "payload_format",
            default="json",
            show_default=True,
            type=click.Choice(["json", "slack", "pagerduty"]),
            help="The payload: driftloop's alert JSON, a Slack message, or a PagerDuty Events v2 trigger.",
        ),
        click.option("--routing-key-env", help="PagerDuty: the environment variable holding the integration key."),
    ]
    for option in reversed(options):
        with_forwarder = option(with_forwarder)
    return with_forwarder


def _forwarder(
    urls: tuple[str, ...],
    url_envs: tuple[str, ...],
    url_files: tuple[Path, ...],
    payload_format: str,
    routing_key_env: str | None,
) -> WebhookForwarder:
    import os

    from driftloop.streams.drift.routing import secret_urls
    from driftloop.streams.drift.subscribers import WebhookForwarder

    targets = secret_urls(url_envs, url_files)
    if urls:
        console.print(
            "[yellow]webhook URLs on the command line are visible to every user of this machine: "
            "pass them with --url-env or --url-file[/]"
        )
        targets = [*urls, *targets]
    if not targets:
        raise click.UsageError("no webhook URL: give --url-env NAME or --url-file PATH")
    routing_key = os.environ.get(routing_key_env, "") if routing_key_env else None
    if payload_format == "pagerduty" and not routing_key:
        raise click.UsageError("--format pagerduty needs --routing-key-env NAME (an environment variable that is set)")
    return WebhookForwarder(targets, format=payload_format, routing_key=routing_key)


@alerts.command("webhook")
@_destinations
@click.option("--model", "models", multiple=True, help="Only models matching this glob (repeatable).")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(["data", "prediction", "performance", "release"]),
    help="Only this kind (repeatable; none: every kind of drift). 'release': the release controller's changes of "
    "stage (a rollback: critical; a rejection: warning; a promotion, a shadow, a canary: info), taken only when "
    "named: with drifts too, name their kinds as well.",
)
@click.option(
    "--severity", default="info", type=click.Choice(["info", "warning", "critical"]), help="This severity or worse."
)
@click.option(
    "--park-after",
    default="1h",
    show_default=True,
    help="An alert a webhook has not taken after this long (2h, 90m, 45s) is parked and the next ones go on; "
    "'never' holds it back until it is taken.",
)
@click.option("--from-beginning", is_flag=True, help="Also deliver alerts already on the topic.")
@click.pass_context
def alerts_webhook(
    ctx: click.Context,
    forwarder: WebhookForwarder,
    name: str | None,
    models: tuple[str, ...],
    kinds: tuple[str, ...],
    severity: str,
    park_after: str,
    from_beginning: bool,
) -> None:
    """POST each alert the filters take to every webhook, with retries (Ctrl-C stops). URLs come from
    --url-env / --url-file: they hold tokens, and a command line is visible to every user of the machine.
    An alert a webhook refuses (4xx), or does not take within --park-after, is parked (`alerts parked`)."""
    from driftloop.streams.drift.parking import AlertParking
    from driftloop.streams.drift.routing import AlertFilter
    from driftloop.streams.drift.silences import parse_duration
    from driftloop.streams.drift.subscribers import forward_alerts

    park_after_s = None if park_after == "never" else parse_duration(park_after)
    chosen = AlertFilter(models=models, kinds=kinds, min_severity=severity)
    settings = _settings(ctx)
    with contextlib.suppress(KeyboardInterrupt):
        forward_alerts(
            settings,
            forwarder,
            name=name,
            alert_filter=chosen,
            from_beginning=from_beginning,
            parking=AlertParking(settings),
            park_after_s=park_after_s,
        )


@alerts.command("parked")
@click.option("--name", help="Only this subscriber's ('' for the unnamed one).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per parked alert instead of a table.")
@click.pass_context
def alerts_parked(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Alerts a subscriber could not deliver and parked, with why (oldest first)."""
    from rich.table import Table

    from driftloop.streams.drift.parking import AlertParking

    parked = AlertParking(_settings(ctx)).parked(name)
    if as_json:
        for p in parked:
            click.echo(_json(p.to_json()))
        return
    table = Table(title=f"{len(parked)} parked alerts", title_justify="left")
    for column in ("parked at", "subscriber", "destination", "model", "kind", "alert_id", "reason"):
        table.add_column(column)
    for p in parked:
        a = p.alert
        table.add_row(
            _utc(p.parked_at),
            as_text(p.subscriber or "-"),
            as_text(p.destination),
            a.model,
            a.kind,
            a.alert_id,
            as_text(p.reason),
        )
    console.print(table)


@alerts.command("resend")
@_destinations
@click.option("--json", "as_json", is_flag=True, help="The counts as one JSON object.")
@click.pass_context
def alerts_resend(ctx: click.Context, forwarder: WebhookForwarder, name: str | None, as_json: bool) -> None:
    """Send the subscriber's parked alerts again, each to the webhook it was parked for (give the same URLs).
    Exit 1 when some could still not be delivered (they stay parked)."""
    from driftloop.streams.drift.parking import AlertParking
    from driftloop.streams.drift.subscribers import resend_parked

    counts = resend_parked(forwarder, AlertParking(_settings(ctx)), name)
    if as_json:
        click.echo(_json(counts))
    else:
        console.print(
            f"{counts['resent']} re-sent, {counts['failed']} still undeliverable, "
            f"{counts['elsewhere']} parked for other webhooks"
        )
    if counts["failed"]:
        ctx.exit(1)


@alerts.command("silence")
@click.option("--model", required=True, help="The model whose alerts are held back.")
@click.option("--for", "duration", required=True, help="How long: 2h, 90m, 1d12h, 45s, 2w.")
@click.option(
    "--kind", default="", type=click.Choice(["", "data", "prediction", "performance"]), help="Only this kind."
)
@click.option("--reason", default="", help="Why (recorded with the silence).")
@click.option("--json", "as_json", is_flag=True, help="Print the silence as JSON.")
@click.pass_context
def alerts_silence(ctx: click.Context, model: str, duration: str, kind: str, reason: str, as_json: bool) -> None:
    """Hold a model's alerts back for a while: still detected and recorded in drift_alerts (silenced = 1),
    not published (no subscriber is told, no retraining starts)."""
    import getpass

    from driftloop.infra.clickhouse.client import connect
    from driftloop.streams.drift.silences import new_silence, parse_duration, save_silence

    silence = new_silence(model, parse_duration(duration), kind=kind, reason=reason, created_by=getpass.getuser())
    client = connect(_settings(ctx).clickhouse)
    try:
        save_silence(client, silence)
    finally:
        client.disconnect()
    shown = silence.to_json()
    if as_json:
        click.echo(_json(shown))
    else:
        console.print(f"silenced {shown['kind']} alerts of {model} until {shown['ends_at']} ({silence.silence_id})")


@alerts.command("silences")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def alerts_silences(ctx: click.Context, as_json: bool) -> None:
    """The silences in force now."""

    from driftloop.infra.clickhouse.client import connect
    from driftloop.streams.drift.silences import active_silences

    client = connect(_settings(ctx).clickhouse)
    try:
        silences = active_silences(client)
    finally:
        client.disconnect()
    for silence in silences:
        shown = silence.to_json()
        if as_json:
            click.echo(_json(shown))
        else:
            console.print(f"{shown['model']}: {shown['kind']} until {shown['ends_at']}  {as_text(shown['reason'])}")
    if not silences and not as_json:
        console.print("no silence in force")


@cli.command("backtest")
@click.option("--model", required=True, help="The model to replay.")
@click.option("--since", type=click.DateTime(), help="Start of the replay (UTC).")
@click.option("--until", type=click.DateTime(), help="End of the replay (UTC).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per alert that would have fired.")
@click.pass_context
def backtest_cmd(ctx: click.Context, model: str, since: object, until: object, as_json: bool) -> None:
    """Replay a model's history from ClickHouse through its detectors: which alerts would have fired."""
    from rich.table import Table

    from driftloop.streams.drift.backtest import backtest

    with console.status(f"replaying {model} ...") if not as_json else contextlib.nullcontext():
        report = backtest(_settings(ctx), model, since=since, until=until)  # type: ignore[arg-type]
    if as_json:
        for alert in report.alerts:
            click.echo(_json(alert.to_json()))
        return
    title = (
        f"{model}: {report.predictions:,} predictions, {report.labeled:,} labeled rows, "
        f"{report.detections} detections, {len(report.alerts)} alerts"
    )
    table = Table(title=title, title_justify="left")
    for column in ("event time", "kind", "signal", "detector", "severity", "change point", "statistic"):
        table.add_column(column)
    for alert in report.alerts:
        data = alert.to_json()
        change_point = f"{data['change_point_ts']} ({alert.change_point_request_id})"
        table.add_row(
            data["event_ts"],
            alert.kind,
            as_text(alert.signal),
            alert.detector,
            alert.severity,
            as_text(change_point),
            f"{alert.statistic:.4g}",
        )
    console.print(table)


@cli.group(cls=DriftloopGroup)
def specs() -> None:
    """Model spec files: check them as the workers will read them."""


@specs.command("check")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file instead of a table.")
@click.pass_context
def specs_check(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Check spec files (default: every <model>.toml in DRIFTLOOP_SPECS_DIR) as the workers will read them: the
    fields, each detector with its parameters, the architecture and its search space. Exits 1 when one is wrong."""
    from rich.table import Table

    from driftloop.cli.spec_check import check_spec_file

    directory = _settings(ctx).spec_directory
    paths = list(files) or sorted(directory.glob("*.toml"))
    if not paths:
        raise DriftloopError(f"no spec files in {directory} (DRIFTLOOP_SPECS_DIR); name the files to check")
    checks = [check_spec_file(path) for path in paths]
    table = Table()
    for column in ("file", "model", "verdict"):
        table.add_column(column, no_wrap=column != "verdict", overflow="fold")
    for check in checks:
        if as_json:
            click.echo(_json({"path": check.path, "model": check.model, "ok": check.ok, "problem": check.problem}))
        else:
            verdict = "ok" if check.ok else f"[red]{as_text(check.problem.removeprefix(f'{check.path}: '))}[/]"
            table.add_row(as_text(str(check.path)), as_text(check.model), verdict)
    if not as_json:
        console.print(table)
    if not all(check.ok for check in checks):
        ctx.exit(1)


@cli.command("retrain-worker")
@click.pass_context
def retrain_worker(ctx: click.Context) -> None:
    """Run the retraining worker: drift alerts in, challengers trained and gated, new champions out."""
    from driftloop.infra.metrics import serve_metrics
    from driftloop.retrain.metrics import retrain_metrics
    from driftloop.retrain.worker import RetrainWorker

    settings = _settings(ctx)
    worker = RetrainWorker(settings)
    serve_metrics(settings.retrain_metrics_port, lambda: retrain_metrics(worker))
    console.print(
        f"driftloop retrain-worker: {settings.topics.alerts} → {settings.topics.model_versions}; Ctrl-C stops it",
        style="dim",
    )
    with contextlib.suppress(KeyboardInterrupt):
        worker.run()


@cli.command("retrain")
@click.option("--model", required=True, help="The model to train.")
@click.option("--now", is_flag=True, required=True, help="Train now, from labeled rows already in ClickHouse.")
@click.option("--days", type=float, help="Training window in days (default: the spec's training.window_days).")
@click.option("--json", "as_json", is_flag=True, help="The run as one JSON object (as in retrain_runs).")
@click.pass_context
def retrain_now(ctx: click.Context, model: str, now: bool, days: float | None, as_json: bool) -> None:
    """Train a version now (the first one, or a challenger) and promote it if it beats the champion.

    Exit 0 when it became the champion or a candidate; 1 when it was rejected, skipped (data gate, budget)
    or the job failed.
    """
    import time

    from rich.progress import Progress

    from driftloop.retrain.job import JobRequest, RetrainJob

    job = RetrainJob(_settings(ctx))
    window = days if days is not None else job.specs.get(model).training.window_days
    with Progress(console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"training {model}", total=1.0)
        report = job.run(
            JobRequest(model, time.time() - window * 86400, trigger="manual"),
            progress=lambda phase, done: progress.update(task, completed=done),
        )
    if as_json:
        from driftloop.retrain.job import RUN_COLUMNS

        click.echo(_json(dict(zip(RUN_COLUMNS, report.row(), strict=True))))
        ctx.exit(0 if report.status in ("promoted", "candidate") else 1)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in report.phases.items())
    error = f" {as_text(report.error)}" if report.error else ""
    tuning = f"; {report.trials} trials, {report.trials_pruned} pruned" if report.trials else ""
    against = _against(report.champion_metric, report.champion_version)
    console.print(
        f"{model}: {report.status} v{report.challenger_version} on {report.device} "
        f"({report.metric_name} {report.challenger_metric:.4f}, {against}; "
        f"{report.train_rows:,} / {report.validation_rows:,} / {report.holdout_rows:,} train / validation / test "
        f"rows{tuning}; {timings}){error}"
    )
    if report.status not in ("promoted", "candidate"):
        ctx.exit(1)


@cli.group(cls=DriftloopGroup)
def models() -> None:
    """The model registry: versions, champions, promotion and rollback."""


@models.command("list")
@click.option("--model", help="Only this model.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version instead of a table.")
@click.pass_context
def models_list(ctx: click.Context, model: str | None, as_json: bool) -> None:
    """Every version of every model (or one), with its stage, traffic share and metric."""
    import dataclasses

    from rich.table import Table

    from driftloop.models.registry import ModelRegistry

    registry = ModelRegistry(_settings(ctx))
    table = Table()
    for column in ("model", "version", "stage", "traffic", "metric", "champion's", "trained on", "since"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for name in [model] if model else registry.models():
        for r in registry.versions(name):
            if as_json:
                click.echo(_json({k: v for k, v in dataclasses.asdict(r).items() if k != "metrics"}))
                continue
            table.add_row(
                r.model,
                str(r.version),
                r.status,
                _percent(r.traffic_share) if r.status in ("canary", "champion") else "-",
                f"{r.metric_name} {r.metric_value:.4f}",
                "-" if math.isnan(r.champion_metric) else f"{r.champion_metric:.4f}",
                f"{r.train_rows:,}",
                _utc(r.updated_at),
                as_text(r.reason),
            )
    if not as_json:
        console.print(table)


@models.command("show")
@click.argument("model")
@click.option("--version", type=int, help="Default: the champion.")
@click.option("--json", "as_json", is_flag=True, help="The version and its history as one JSON object.")
@click.pass_context
def models_show(ctx: click.Context, model: str, version: int | None, as_json: bool) -> None:
    """One version in full (artifact, checksum, parent, trigger, training window, metrics) and its stages."""
    import dataclasses

    from rich.table import Table

    from driftloop.models.registry import ModelRegistry, RegistryError

    registry = ModelRegistry(_settings(ctx))
    record = registry.get(model, version) if version is not None else registry.champion(model)
    if record is None:
        raise RegistryError(f"{model} has no champion; `driftloop models list --model {model}` shows its versions")
    changes = registry.changes(model, record.version)
    if as_json:
        data = dataclasses.asdict(record) | {"history": [dataclasses.asdict(c) for c in changes]}
        click.echo(_json(data))
        return
    console.print_json(_json(dataclasses.asdict(record)))
    table = Table(title=f"{model} v{record.version}: stages", title_justify="left")
    for column in ("at", "from", "to", "path", "traffic", "evidence", "reason"):
        table.add_column(column)
    for c in changes:
        e = c.evidence
        evidence = f"{e.test} {e.result} on {e.rows:,} rows" if e.test else (e.result or "-")
        share = _percent(c.traffic_share) if c.to_stage in ("canary", "champion") else "-"
        table.add_row(_utc(c.changed_at), c.from_stage, c.to_stage, c.path, share, evidence, as_text(c.reason))
    console.print(table)


def _percent(share: float) -> str:
    """A share of requests in percent, as precise as it was set (a canary of 0.5 % is not "0%")."""
    return f"{share * 100:g}%"


@models.command("promote")
@click.argument("model")
@click.argument("version", type=int)
@click.option("--reason", default="promoted by hand", help="Why, recorded with the change (version_changes).")
@click.pass_context
def models_promote(ctx: click.Context, model: str, version: int, reason: str) -> None:
    """Make VERSION the champion now, skipping shadow and canary (verified first; recorded as manual)."""
    from driftloop.models.registry import ModelRegistry

    record = ModelRegistry(_settings(ctx)).promote(model, version, reason)
    console.print(f"{model}: v{record.version} is the champion")


@models.command("canary")
@click.argument("model")
@click.argument("version", type=int)
@click.option(
    "--share",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    required=True,
    help="The share of requests it answers (chosen from the request id, as the controller's canary is).",
)
@click.option("--reason", default="canary share set by hand", help="Why, recorded with the change (version_changes).")
@click.pass_context
def models_canary(ctx: click.Context, model: str, version: int, share: float, reason: str) -> None:
    """Make VERSION (a candidate, the shadow or the canary) the canary answering SHARE of requests now: to widen
    or narrow a canary by hand (recorded as manual). The release controller judges it from there, on the rows
    served since, and widens it through the spec's canary_steps above SHARE before it becomes champion."""
    from driftloop.models.registry import ModelRegistry

    ModelRegistry(_settings(ctx)).transition(
        model, version, "canary", reason=reason, path="manual", traffic_share=share
    )
    console.print(f"{model}: v{version} is the canary, answering {_percent(share)} of requests")


@models.command("rollback")
@click.argument("model")
@click.option("--reason", default="rolled back by hand", help="Why, recorded with the change (version_changes).")
@click.pass_context
def models_rollback(ctx: click.Context, model: str, reason: str) -> None:
    """Take the champion back (rolled_back) and bring back the previous one."""
    from driftloop.models.registry import ModelRegistry

    record = ModelRegistry(_settings(ctx)).rollback(model, reason)
    console.print(f"{model}: rolled back to v{record.version}")


#: ``models rebuild`` exit statuses besides 0 (the rebuild matches its record).
REBUILD_DIFFERS, REBUILD_DATA_CHANGED = 3, 4


@models.command("rebuild")
@click.argument("model")
@click.argument("version", type=int)
@click.option("--json", "as_json", is_flag=True, help="The comparison as one JSON object.")
@click.pass_context
def models_rebuild(ctx: click.Context, model: str, version: int, as_json: bool) -> None:
    """Train VERSION again from its build record (same rows, spec, hyper-parameters, seed) and compare.

    Exit 0: it matches (CPU: the weights bit for bit; GPU: test metrics within 0.01). 3: it was trained again
    and differs. 4: the version's rows are no longer what it was trained on (nothing trained). 1: it cannot be
    rebuilt (no such version, no build record).
    """

    from rich.progress import Progress
    from rich.table import Table

    from driftloop.retrain.rebuild import rebuild

    with Progress(console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"rebuilding {model} v{version}", total=None)
        result = rebuild(
            _settings(ctx),
            model,
            version,
            progress=lambda epoch, epochs, loss: progress.update(task, completed=epoch, total=epochs),
        )
    if as_json:
        click.echo(_json(result.to_json()))
    else:
        table = Table(title=f"{model} v{version}: rebuild {result.status}", title_justify="left")
        for column in ("", "recorded", "rebuilt"):
            table.add_column(column)
        table.add_row("device", result.recorded_device, result.device)
        table.add_row("weights sha256", result.recorded_weights[:16], result.rebuilt_weights[:16])
        for name, value in result.recorded_metrics.items():
            table.add_row(f"test {name}", f"{value:.6f}", f"{result.rebuilt_metrics.get(name, float('nan')):.6f}")
        for name, value in result.versions.items():
            table.add_row(name, result.recorded_versions.get(name, "?"), value)
        console.print(table)
        console.print(result.detail)
    codes = {"match": 0, "differs": REBUILD_DIFFERS, "data_changed": REBUILD_DATA_CHANGED}
    ctx.exit(codes[result.status])


@cli.command("retention")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per week dropped instead of a table.")
@click.pass_context
def retention_cmd(ctx: click.Context, as_json: bool) -> None:
    """Drop the weeks of event tables older than DRIFTLOOP_RETENTION_DAYS gives them (the streams worker does it
    every hour), and set their TTL where ClickHouse has one."""
    import dataclasses

    from rich.table import Table

    from driftloop.infra.clickhouse.client import enforce_retention

    settings = _settings(ctx)
    if not settings.retention:
        raise click.UsageError("DRIFTLOOP_RETENTION_DAYS is not set (e.g. predictions=30,labeled=90): nothing to do")
    dropped = enforce_retention(settings.clickhouse, settings.retention)
    if as_json:
        for week in dropped:
            click.echo(_json(dataclasses.asdict(week)))
        return
    table = Table(title=f"retention: {settings.retention_days}", title_justify="left")
    for column in ("table", "week from", "rows"):
        table.add_column(column)
    for week in dropped:
        table.add_row(week.table, week.week, f"{week.rows:,}")
    console.print(table if dropped else "nothing is older than its retention")


@cli.command("release")
@click.option("--once", is_flag=True, help="One pass over every model, then exit.")
@click.option(
    "--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True, help="seconds between passes"
)
@click.pass_context
def release_cmd(ctx: click.Context, once: bool, interval: float) -> None:
    """Run the release controller for every model (the retrain worker runs it already: use this without one).

    A pass that fails (ClickHouse away) is tried again at the next one, and said once a minute; with
    ``--once`` its error is the command's."""
    import logging
    import time

    from driftloop.infra.logs import RepeatLimiter
    from driftloop.infra.service_errors import explain
    from driftloop.release.controller import ReleaseController

    settings = _settings(ctx)
    controller, log = ReleaseController(settings), logging.getLogger("driftloop.release.loop")
    log.addFilter(RepeatLimiter((log.name,), window_s=60))  # a pass failing again and again: said once a minute
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            try:
                decisions = controller.tick()
            except Exception as exc:
                if once:
                    raise
                clear = explain(exc, settings)
                log.warning(
                    "release pass failed; tried again at every pass",
                    extra={"fields": {"error": str(clear) if clear else repr(exc), "interval_s": interval}},
                    exc_info=clear is None,
                )
                decisions = []
            for decision in decisions:
                console.print(
                    f"{decision.model}: v{decision.version} → {decision.to_stage} ({as_text(decision.reason)})"
                )
            if once:
                return
            time.sleep(interval)


@cli.command("scorecard")
@click.option("--model", required=True, help="the model")
@click.option("--since", type=click.DateTime(), default=None, help="from this time (UTC); default: all")
@click.option("--until", type=click.DateTime(), default=None, help="up to this time (UTC); default: now")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row instead of tables.")
@click.pass_context
def scorecard_cmd(
    ctx: click.Context, model: str, since: dt.datetime | None, until: dt.datetime | None, as_json: bool
) -> None:
    """The model's scorecard per version, stage and hour: business results, model metrics, operations."""

    from rich.table import Table

    from driftloop.analytics.queries import NoDataError
    from driftloop.analytics.scorecard import LAYERS, load_scorecard, load_spec_row

    settings = _settings(ctx)
    rows = load_scorecard(settings, model, since=_epoch(since), until=_epoch(until))
    if as_json:
        for row in rows:
            click.echo(_json(row.to_json()))
        return
    if not rows:
        raise NoDataError(f"{model} has no predictions in that time range: is it the model's exact name?")
    spec = load_spec_row(settings, model)
    if spec is not None and spec.owner:
        console.print(f"{model} · owner {spec.owner}")
    for layer, columns in LAYERS:
        said = spec.describe(layer) if spec is not None else ""
        table = Table(title=f"{model}: {layer}" + (f" ({said})" if said else ""), title_justify="left")
        for column in ("hour", "version", "stage", *columns):
            table.add_column(column, justify="right" if column in columns else "left")
        for row in rows:
            data = row._asdict()
            table.add_row(
                row.hour.strftime("%Y-%m-%d %H:00"), f"v{row.version}", row.stage, *(_cell(data[c]) for c in columns)
            )
        console.print(table)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:,.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _epoch(value: dt.datetime | None) -> float | None:
    return None if value is None else value.replace(tzinfo=dt.UTC).timestamp()


@cli.command("demo")
@click.option("--events", type=click.IntRange(min=100), default=30_000, show_default=True, help="events to serve")
@click.option("--rate", type=click.FloatRange(min=1), default=250.0, show_default=True, help="events per second")
@click.option("--seed", type=int, default=42, show_default=True, help="the scenario's random seed")
@click.option(
    "--drift-at",
    type=click.FloatRange(0.05, 0.95),
    default=0.35,
    show_default=True,
    help="where the drift begins, as a fraction of the stream",
)
@click.option(
    "--label-delay",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="mean seconds before an outcome follows its prediction",
)
@click.option("--report/--no-report", default=True, show_default=True, help="write the HTML report at the end")
@click.option(
    "--after-swap",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="serve past --events (up to twice as many) until a new version has served this many",
)
@click.pass_context
def demo_cmd(
    ctx: click.Context,
    events: int,
    rate: float,
    seed: int,
    drift_at: float,
    label_delay: float,
    report: bool,
    after_swap: int,
) -> None:
    """The closed loop on the local stack: drift injected, detected, retrained, recovered (Ctrl-C stops it)."""
    from driftloop.demo.live import summary_table
    from driftloop.demo.runner import DemoOptions, run_demo

    options = DemoOptions(events, rate, seed, drift_at, label_delay, report, after_swap)
    summary = run_demo(_settings(ctx), options, console=console)
    console.print(summary_table(summary))
    console.print("The stack is still running: query it (docs/sql.md), or stop it with `driftloop stack down`.")


@cli.command("report")
@click.option("--model", required=True, help="the model to report on")
@click.option("--since", type=click.DateTime(), default=None, help="from this time (UTC); default: all")
@click.option("--until", type=click.DateTime(), default=None, help="up to this time (UTC); default: now")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the HTML file to write (default: HOME/reports/<model>.html)",
)
@click.pass_context
def report_cmd(
    ctx: click.Context, model: str, since: dt.datetime | None, until: dt.datetime | None, out: Path | None
) -> None:
    """A self-contained HTML report with plots: accuracy over time, alerts, drifted features, retraining."""
    from driftloop.analytics.report import write_report

    with console.status(f"reading {model} from ClickHouse and plotting ..."):
        path = write_report(_settings(ctx), model, since=_epoch(since), until=_epoch(until), path=out)
    console.print(f"report written: {path}")


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="driftloop"))


if __name__ == "__main__":
    main()
