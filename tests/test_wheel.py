"""driftloop as users get it: a wheel built from the checkout, installed (not editable) into a fresh
environment, working beside a user's own ``models`` and ``analytics`` packages that come first on
``sys.path``: the CLI, the streams worker with its child processes, and ``ModelClient``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from driftloop.infra.clickhouse.client import connect
from tests.stack_fixtures import REPO, PrivateStack, wait_for

pytestmark = pytest.mark.integration

SERVE = """
import sys
import driftloop.models.serving as serving
import models, analytics  # the user's own packages, first on sys.path
from driftloop.demo.bootstrap import register_champion, write_spec
from driftloop.demo.scenario import agrawal_frame
from driftloop.infra.settings import get_settings

assert models.MINE and analytics.MINE, "the user's packages are shadowed"
assert "site-packages" in serving.__file__, serving.__file__
settings = get_settings()
register_champion(settings, write_spec(settings), rows=1500)
features, _ = agrawal_frame(0, 50, seed=5)
with serving.ModelClient("loan-approval", settings) as client:
    result = client.predict(features)
print("served", len(result.values), "by version", result.version)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with the wheel in it (its dependencies come from this environment, unchanged)."""
    where = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(where),
         str(REPO)],
        check=True,
        cwd=where,
    )  # fmt: skip
    (wheel,) = where.glob("driftloop-*.whl")
    env = where / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    site = next((env / "lib").glob("python*/site-packages"))
    # This environment's packages, but not its editable driftloop: a .pth inside a .pth'd folder is not run.
    folders = [sysconfig.get_paths()["purelib"], *(p for p in sys.path if p.endswith("site-packages"))]
    (site / "dependencies.pth").write_text("\n".join(dict.fromkeys(folders)) + "\n")
    subprocess.run([env / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)
    return env


def user_env(stack: PrivateStack, shadow: Path, **extra: str) -> dict[str, str]:
    for name in ("models", "analytics"):
        (shadow / name).mkdir(parents=True, exist_ok=True)
        (shadow / name / "__init__.py").write_text("MINE = True\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_") and k != "PYTHONPATH"}
    return base | stack.env | {"PYTHONPATH": str(shadow)} | extra


def test_the_installed_wheel_works_beside_a_users_models_and_analytics_packages(
    installed: Path, stack: PrivateStack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    private = stack.with_env(
        DRIFTLOOP_EMBEDDED="false",  # the session's stack runs: `stack up` provisions the test's own names
        DRIFTLOOP_HOME=str(tmp_path / "home"),
        DRIFTLOOP_TOPIC_PREFIX=f"wheel-{tag}.",
        DRIFTLOOP_WORKER_GROUP=f"wheel-{tag}",
        DRIFTLOOP_CLICKHOUSE_URL=stack.env["DRIFTLOOP_CLICKHOUSE_URL"].rsplit("/", 1)[0] + f"/wheel_{tag}",
        DRIFTLOOP_BATCH_MAX_WAIT_S="0.2",
    )
    env = user_env(private, tmp_path / "user")
    cli = installed / "bin" / "driftloop"
    up = subprocess.run([cli, "stack", "up"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr

    served = subprocess.run(
        [installed / "bin" / "python", "-c", SERVE], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert served.returncode == 0, served.stdout[-2000:] + served.stderr[-3000:]
    assert "served 50 by version 1" in served.stdout

    model = "wheel-" + tag
    producer = KafkaProducer(**private.settings.kafka_python_config())
    for i in range(300):
        event = {"model": model, "request_id": f"r{i}", "ts": time.time(), "features": {"x": i}, "prediction": 1}
        producer.send(private.settings.topics.predictions, json.dumps(event).encode())
    producer.flush()
    producer.close()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([cli, "worker"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:

        def landed() -> bool:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            rows = connect(private.settings.clickhouse).execute(
                "SELECT count() FROM predictions FINAL WHERE model = %(m)s", {"m": model}
            )
            return rows[0][0] == 300

        wait_for(landed, timeout_s=120, what="the installed worker to land the events")
    finally:
        worker.terminate()
        worker.wait(60)
        log.close()
