"""The CLI for scripts: every option says what it does, and every command that prints a table can print JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import click
from click.testing import CliRunner
from rich.console import Console

from driftloop.cli.main import alert_line, cli
from driftloop.infra.contract import Alert
from driftloop.infra.network import free_port

#: Commands that print no table: services that run until stopped, actions that print one line, the report.
NO_TABLE = {
    "stack up",
    "stack down",
    "worker",
    "retrain-worker",
    "release",
    "demo",
    "report",
    "alerts webhook",
    "models promote",
    "models canary",
    "models rollback",
}


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def test_every_option_and_command_has_help_text() -> None:
    missing = [
        f"{name} --{param.name}"
        for name, command in commands()
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []
    assert [name for name, command in commands() if not command.help] == []


def test_every_command_that_prints_a_table_takes_json() -> None:
    names = dict(commands())
    assert set(names) >= NO_TABLE, NO_TABLE - set(names)
    without = [name for name, command in names.items() if name not in NO_TABLE and "as_json" not in {
        p.name for p in command.params
    }]  # fmt: skip
    assert without == []


def test_settings_print_as_json_with_secrets_masked() -> None:
    env = {
        "DRIFTLOOP_CLICKHOUSE_URL": "clickhouse://u:s3cret@127.0.0.1:9000/x",
        "DRIFTLOOP_RETENTION_DAYS": "labeled=9",
    }
    result = CliRunner().invoke(cli, ["settings", "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["DRIFTLOOP_RETENTION_DAYS"] == "labeled=9" and "s3cret" not in result.output


def test_an_alert_s_message_prints_as_written() -> None:
    """Feature names and request ids in a message hold brackets: rich read ``price[usd]`` as markup (the
    ``[usd]`` vanished) and raised on a ``[/]``, which stopped ``alerts tail``."""
    alert = replace(Alert.example(), message="drift on price[usd] and x[/]y since request [bold]r-1")
    out = Console(record=True, width=200)
    out.print(alert_line(alert))
    assert "drift on price[usd] and x[/]y since request [bold]r-1" in out.export_text()


def test_a_backtest_of_a_spec_its_detectors_refuse_says_so_before_replaying(tmp_path: Path) -> None:
    """A spec whose detector parameters River refuses (an alpha past 1) leaves its model unmonitored in the
    worker; a backtest of it replayed the history and reported no alert, as if the spec were quiet."""
    (tmp_path / "m.toml").write_text(
        'name = "m"\n[monitoring.signals.amount]\ndetector = { name = "KSWIN", params = { alpha = 2.0 } }\n'
    )
    env = {"DRIFTLOOP_SPECS_DIR": str(tmp_path), "DRIFTLOOP_CLICKHOUSE_URL": f"clickhouse://127.0.0.1:{free_port()}/x"}
    result = CliRunner().invoke(cli, ["backtest", "--model", "m"], env=env)
    assert result.exit_code != 0 and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert f"{tmp_path / 'm.toml'}: monitoring.signals.amount.detector: KSWIN(alpha=2.0) cannot run" in said


def test_a_model_name_that_is_a_path_is_refused_by_name(tmp_path: Path) -> None:
    """``--model ../x`` is no model name: ``retrain`` and ``backtest`` raised pydantic's traceback out of the
    spec they made for it (and a library caller of the spec catalog read ``specs/../x.toml``). Now every
    command that reads a model's spec says what a model name is, before anything is read or written."""
    env = {"DRIFTLOOP_SPECS_DIR": str(tmp_path), "DRIFTLOOP_CLICKHOUSE_URL": f"clickhouse://127.0.0.1:{free_port()}/x"}
    for command in (["retrain", "--model", "../x", "--now"], ["backtest", "--model", "../x"]):
        result = CliRunner().invoke(cli, command, env=env)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "'../x' is no model name: it must match" in result.output


def test_specs_check_refuses_what_a_worker_would_refuse_and_names_the_field(tmp_path: Path) -> None:
    """A spec that loads can still be refused by the detection process (a detector's parameters) or by a
    retraining job (an architecture's): ``specs check`` reads each file as all of them will, for a CI to run."""
    files = {
        "fraud": 'name = "fraud"\nowner = "risk-ml"\n[features]\ncountry = "categorical"\n',
        "churn": 'name = "churn"\n[monitoring.signals.tenure]\n'
        'detector = { name = "KSWIN", params = { alpha = 2.0 } }\n',
        "price": 'name = "price"\ntask = "regression"\n[architecture]\nparams = { hiden = [128] }\n',
        "ltv": 'name = "ltv"\n[features]\nplan = "categorical"\n'
        '[monitoring.signals.plan]\ndetector = { name = "ADWIN" }\n',
    }
    for model, text in files.items():
        (tmp_path / f"{model}.toml").write_text(text)
    env = {"DRIFTLOOP_SPECS_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli, ["specs", "check", "--json"], env=env)
    assert result.exit_code == 1, result.output
    verdicts = {line["model"]: line["problem"] for line in map(json.loads, result.output.splitlines())}
    assert verdicts == {
        "churn": f"{tmp_path / 'churn.toml'}: monitoring.signals.tenure.detector: KSWIN(alpha=2.0) cannot run: "
        "Alpha must be between 0 and 1.",
        "fraud": "",
        "ltv": f"{tmp_path / 'ltv.toml'}: monitoring.signals.plan.detector: ADWIN takes numbers and categorical "
        "values are categories: use CategoricalShift",
        "price": f"{tmp_path / 'price.toml'}: architecture.params.hiden: tabular_mlp takes no parameter 'hiden' "
        "(it takes dropout, embedding_dim, hidden)",
    }
    alone = CliRunner().invoke(cli, ["specs", "check", str(tmp_path / "fraud.toml")], env=env)
    assert alone.exit_code == 0 and "fraud" in alone.output and "ok" in alone.output
