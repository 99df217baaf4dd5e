"""The retrain worker: its policy (kinds, debounce, cooldown, waiting for labels) and a kill mid-training."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from benchmarks import scrape_metrics
from driftloop.demo.labeled_history import TS0
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.contract import Alert
from driftloop.infra.kafka.partitioner import default_partition
from driftloop.infra.network import free_port
from driftloop.infra.settings import Settings
from driftloop.infra.spec import SpecCatalog
from driftloop.infra.stack import stack as local_stack
from driftloop.retrain.job import FinishedRun
from driftloop.retrain.worker import RetrainPolicy, RetrainWorker, _HandOver
from tests.stack_fixtures import REPO, wait_for


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def alert(model: str, kind: str = "performance", change_point: float = TS0 + 3000, n: int = 0) -> Alert:
    return replace(Alert.example(), alert_id=f"a{n}", model=model, kind=kind, change_point_ts=change_point)  # type: ignore[arg-type]


def test_bursts_make_one_job_from_the_earliest_change_point(tmp_path: Path) -> None:
    clock = Clock()
    policy = RetrainPolicy(SpecCatalog(tmp_path), clock=clock)
    for n, change_point in enumerate([TS0 + 500, TS0 + 100, TS0 + 900]):
        assert policy.offer(alert("m", change_point=change_point, n=n))
    assert not policy.offer(alert("m", kind="data"))  # only performance alerts start jobs by default
    assert policy.due() == []  # still debouncing
    clock.now += 10
    (job,) = policy.due()
    assert job.request.since == TS0 + 100 and job.alerts == ["a0", "a1", "a2"]
    policy.wait(job)  # too few labels: look again later
    assert policy.due() == [] and "m" in policy.pending
    clock.now += 15
    assert policy.due() == [job]
    policy.finish(job)
    assert not policy.offer(alert("m", n=9))  # cooling down
    clock.now += 300
    assert policy.offer(alert("m", n=10))


def test_failed_jobs_are_retried_then_given_up(tmp_path: Path) -> None:
    clock = Clock()
    policy = RetrainPolicy(SpecCatalog(tmp_path), clock=clock)
    policy.offer(alert("m"))
    job = policy.pending["m"]
    assert policy.retry(job) and job.request.attempt == 2
    assert policy.retry(job) and job.request.attempt == 3
    assert not policy.retry(job) and "m" not in policy.pending  # max_attempts = 3


@pytest.mark.integration
def test_a_worker_killed_mid_training_leaves_no_version_and_the_job_is_retried(
    retrain_settings: Settings, labeled_model, stack, tmp_path: Path
) -> None:
    model = labeled_model(before=3000, after=6000, spec="epochs = 400\npatience = 400\n")
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
        | stack.env
        | {
            "DRIFTLOOP_SPECS_DIR": str(retrain_settings.spec_directory),
            "DRIFTLOOP_ARTIFACTS": retrain_settings.artifact_location,
        }
    )
    # debounce 0 so that the job starts at once
    spec = retrain_settings.spec_directory / f"{model}.toml"
    spec.write_text(spec.read_text() + "[retraining]\ndebounce_s = 0\n")

    def start(log: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "driftloop.cli.main", "retrain-worker"],
            cwd=REPO,
            env=env | extra,
            stdout=open(tmp_path / log, "wb"),
            stderr=subprocess.STDOUT,
        )

    def statuses() -> list[str]:
        return [
            s
            for (s,) in connect(retrain_settings.clickhouse).execute(
                "SELECT argMax(status, revision) FROM retrain_runs WHERE model = %(m)s GROUP BY run_id", {"m": model}
            )
        ]

    producer = KafkaProducer(**retrain_settings.kafka_python_config())
    producer.send(retrain_settings.topics.alerts, json.dumps(alert(model).to_json()).encode(), key=model.encode())
    producer.flush()
    first = start("first.log")
    try:
        wait_for(lambda: "running" in statuses(), timeout_s=90, what="training to start")
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    versions = connect(retrain_settings.clickhouse).execute(
        "SELECT count() FROM model_versions WHERE model = %(m)s", {"m": model}
    )
    assert versions == [(0,)]
    assert not list((Path(retrain_settings.artifact_location) / model).glob("v*"))  # no half-written version

    spec.write_text(spec.read_text().replace("epochs = 400\npatience = 400", "epochs = 10"))
    metrics_port = free_port()
    second = start("second.log", DRIFTLOOP_RETRAIN_METRICS_PORT=str(metrics_port))
    try:
        wait_for(lambda: "promoted" in statuses(), timeout_s=120, what="the retried job to promote a version")
        # the run, as Prometheus sees it (the counter moves just after the run's last row is written)
        promoted = 'driftloop_retrain_runs_total{status="promoted"}'
        samples = wait_for(
            lambda: (s := scrape_metrics(metrics_port)).get(promoted) == 1 and s,
            timeout_s=10,
            what="the promoted run in the retrain worker's metrics",
        )
        assert samples['driftloop_retrain_alerts_total{outcome="accepted"}'] == 1
        assert samples["driftloop_retrain_duration_seconds_count"] == 1
        assert samples["driftloop_retrain_pending_jobs"] == 0
    finally:
        second.terminate()
        second.wait(30)
    rows = connect(retrain_settings.clickhouse).execute(
        "SELECT version, status FROM model_versions FINAL WHERE model = %(m)s", {"m": model}
    )
    assert rows == [(1, "champion")]


def test_a_job_waiting_for_labels_gives_up_after_max_wait(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text('name = "m"\n[retraining]\nmax_wait_s = 60\nrecheck_s = 15\n')
    clock = Clock()
    policy = RetrainPolicy(SpecCatalog(tmp_path), clock=clock)
    policy.offer(alert("m"), ("alerts", 2, 41))
    job = policy.pending["m"]
    assert policy.held() == {("alerts", 2): 41}  # commits stop before the alert the job still needs
    clock.now += 30
    assert policy.wait(job) and policy.held() == {("alerts", 2): 41}
    clock.now += 30
    assert not policy.wait(job)  # 60 s after its alert: given up, and the model cools down
    assert policy.pending == {} and policy.held() == {}
    assert not policy.offer(alert("m", n=1))


def test_cooldowns_are_restored_from_finished_runs(tmp_path: Path) -> None:
    clock = Clock()
    policy = RetrainPolicy(SpecCatalog(tmp_path), clock=clock)  # default cooldown 300 s, max_attempts 3
    policy.restore(
        [
            FinishedRun("promoted-recently", "promoted", 1, clock.now - 100),
            FinishedRun("promoted-long-ago", "promoted", 1, clock.now - 400),
            FinishedRun("failed-will-retry", "failed", 1, clock.now - 10),
            FinishedRun("failed-for-good", "failed", 3, clock.now - 10),
        ]
    )
    offered = {m: policy.offer(alert(m)) for m in
               ("promoted-recently", "promoted-long-ago", "failed-will-retry", "failed-for-good")}  # fmt: skip
    assert offered == {
        "promoted-recently": False,
        "promoted-long-ago": True,
        "failed-will-retry": True,
        "failed-for-good": False,
    }


@pytest.mark.integration
def test_a_model_without_labels_no_longer_holds_commits_and_cooldowns_survive_a_restart(
    retrain_settings: Settings, labeled_model, stack
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings.from_env(
        stack.env
        | {
            "DRIFTLOOP_TOPIC_PREFIX": f"retrain-{tag}.",
            "DRIFTLOOP_SPECS_DIR": str(retrain_settings.spec_directory),
            "DRIFTLOOP_ARTIFACTS": retrain_settings.artifact_location,
        }
    )
    local_stack.up(settings)  # the stack runs: this only provisions the test's own topics
    trained = labeled_model(before=3000, after=2000, spec="[retraining]\ndebounce_s = 0\n")
    never = "never-" + tag  # no labels will ever come
    (settings.spec_directory / f"{never}.toml").write_text(
        f'name = "{never}"\n[retraining]\ndebounce_s = 0\nrecheck_s = 0.5\nmax_wait_s = 3\n'
    )
    producer = KafkaProducer(**settings.kafka_python_config())
    sent = [
        producer.send(settings.topics.alerts, json.dumps(alert(m, n=n).to_json()).encode(), key=m.encode())
        for n, m in enumerate([never, trained])
    ]
    producer.flush()
    positions = {(f.get(10).partition, f.get(10).offset) for f in sent}

    def runs() -> list[tuple]:
        return connect(settings.clickhouse).execute(
            "SELECT model, argMax(toString(status), revision), argMax(error, revision) FROM retrain_runs "
            "WHERE model IN (%(a)s, %(b)s) GROUP BY model, run_id ORDER BY model",
            {"a": trained, "b": never},
        )

    def finished() -> bool:
        return {status for _, status, _ in runs()} == {"promoted", "skipped"}

    with running(RetrainWorker(settings)):
        wait_for(finished, timeout_s=180, what="one run promoted and one skipped")
    statuses = {model: (status, error) for model, status, error in runs()}
    assert statuses[trained][0] == "promoted"
    assert statuses[never][0] == "skipped" and "gave up waiting for labels" in statuses[never][1]
    assert len(runs()) == 2
    committed = KafkaConsumer(**settings.kafka_python_config(), group_id=settings.groups.retrain)
    for partition, offset in positions:
        assert committed.committed(TopicPartition(settings.topics.alerts, partition)) > offset
    committed.close()

    # a new worker (a restart): nothing read again, and the trained model is still cooling down
    producer.send(settings.topics.alerts, json.dumps(alert(trained, n=7).to_json()).encode(), key=trained.encode())
    producer.flush()
    producer.close()
    with running(RetrainWorker(settings)) as second:
        wait_for(lambda: second.metrics.alerts, timeout_s=120, what="the new alert read")
    assert second.metrics.alerts == {"ignored": 1} and second.reports == []  # committed ones were not read again


@contextlib.contextmanager
def running(worker: RetrainWorker) -> Iterator[RetrainWorker]:
    """``worker`` running in a thread until the block ends."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)
    assert not thread.is_alive()


def test_jobs_of_revoked_partitions_are_forgotten(tmp_path: Path) -> None:
    policy = RetrainPolicy(SpecCatalog(tmp_path), clock=Clock())
    policy.offer(alert("a"), ("alerts", 0, 5))
    policy.offer(alert("b"), ("alerts", 1, 9))
    assert policy.forget_all_but({("alerts", 0)}) == ["b"] and list(policy.pending) == ["a"]


def _spread_over_partitions(prefix: str, partitions: int, each: int) -> list[str]:
    """Model names whose alerts land ``each`` on every partition (kafka-python's default partitioner, keyed by
    model): whichever partitions a worker is given, some of the jobs are its own."""
    names: list[str] = []
    placed = [0] * partitions
    for n in range(100_000):
        name = f"{prefix}-{n}"
        partition = default_partition(name.encode(), partitions)
        if placed[partition] < each:
            names.append(name)
            placed[partition] += 1
        if len(names) == each * partitions:
            return names
    raise AssertionError(f"no {each} names of each of {partitions} partitions")


@pytest.mark.integration
def test_a_rebalance_hands_waiting_jobs_to_the_new_owner(retrain_settings: Settings, stack) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings.from_env(
        stack.env
        | {"DRIFTLOOP_TOPIC_PREFIX": f"rebalance-{tag}.", "DRIFTLOOP_SPECS_DIR": str(retrain_settings.spec_directory)}
    )
    local_stack.up(settings)  # the stack runs: this only provisions the test's own topics
    settings.spec_directory.mkdir(parents=True, exist_ok=True)
    models = _spread_over_partitions(f"wait-{tag}", settings.topic_partitions, 3)  # none gets labels: they wait
    producer = KafkaProducer(**settings.kafka_python_config())
    for n, model in enumerate(models):
        (settings.spec_directory / f"{model}.toml").write_text(
            f'name = "{model}"\n[retraining]\ndebounce_s = 0\nrecheck_s = 0.5\nmax_wait_s = 3600\n'
        )
        producer.send(settings.topics.alerts, json.dumps(alert(model, n=n).to_json()).encode(), key=model.encode())
    producer.flush()
    producer.close()
    with running(RetrainWorker(settings)) as first:
        wait_for(lambda: len(first.policy.pending) == len(models), timeout_s=120, what="every job waiting")
        with running(RetrainWorker(settings)) as second:

            def handed_over() -> bool:
                mine, theirs = set(first.policy.pending), set(second.policy.pending)
                return bool(mine and theirs) and not mine & theirs and mine | theirs == set(models)

            wait_for(
                handed_over,
                timeout_s=120,
                what="the waiting jobs split between the two workers",
                describe=lambda: f"first {sorted(first.policy.pending)}, second {sorted(second.policy.pending)}",
            )


@pytest.mark.integration
def test_a_hand_over_with_alerts_read_and_not_yet_committed_does_not_stop_the_worker(stack) -> None:
    """A hand-over commits what the worker read before its partitions go. kafka-python 3 calls the rebalance
    listener from its I/O thread, where that blocking commit raises; raised out of the listener, the exception
    stopped the retrain worker (seen after a broker restart: a commit had failed, so offsets were pending, and
    the partitions were lost). Now the next owner reads those alerts again (the policy's cooldowns take them as
    the same drift), and the worker goes on."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings.from_env(stack.env | {"DRIFTLOOP_TOPIC_PREFIX": f"handover-{tag}."})
    local_stack.up(settings)  # the stack runs: this only provisions the test's own topics
    group = {
        "group_id": f"handover-{tag}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,  # a rebalance in seconds, not the settings' 30 s
        "heartbeat_interval_ms": 1000,
    }
    read: dict[TopicPartition, int] = {}
    first = KafkaConsumer(**settings.kafka_python_config(), **group)
    first.subscribe([settings.topics.alerts], listener=_HandOver(RetrainWorker(settings), first, read, {}))
    second, joining, stopped = None, None, threading.Event()
    try:
        wait_for(lambda: first.poll(timeout_ms=100) is not None and first.assignment(), interval_s=0, what="partitions")
        read.update((tp, 3) for tp in first.assignment())  # read past the last commit, as a failed commit leaves it
        second = KafkaConsumer(**settings.kafka_python_config(), **group)
        second.subscribe([settings.topics.alerts])
        # each member polled on a thread of its own, as in two processes: polled in turn on one thread, one
        # member's join waited for the other's, which waited for its turn (90 s were not always enough)
        joining = threading.Thread(target=_poll_until, args=(second, stopped), daemon=True)
        joining.start()

        def split() -> bool:
            first.poll(timeout_ms=100)  # raised KafkaError("User rebalance callback throws an error")
            return bool(first.assignment()) and bool(second.assignment())

        wait_for(split, timeout_s=90, interval_s=0, what="the partitions split between the two consumers")
    finally:
        stopped.set()
        if joining is not None:
            joining.join(timeout=10)
        first.close()
        if second is not None:
            second.close()


def _poll_until(consumer: KafkaConsumer, stopped: threading.Event) -> None:
    while not stopped.is_set():
        consumer.poll(timeout_ms=100)
