"""clickhouse-driver fills its table of dates on demand in driftloop's processes (``infra/__init__.py``), and
Date and DateTime values still go to the server and come back as they were."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.stack_fixtures import PrivateStack

# In a process of its own, as the worker's are: driftloop's modules that import the driver, then a round trip of
# dates across the range of 18.16's Date through the real server (it prints day 0 as 0000-00-00).
ROUND_TRIP = """
import json, sys
from datetime import date, datetime, timezone
import driftloop.streams.sink, driftloop.release.controller
from clickhouse_driver.columns import datecolumn
from driftloop.infra.clickhouse.client import connect
from driftloop.infra.settings import Settings

filled = len(datecolumn._date_lut) + len(datecolumn._date_lut_reverse)
days = [date(1970, 1, 2), date(1999, 12, 31), date(2026, 12, 5), date(2100, 2, 28), date(2105, 12, 31)]
times = [datetime(2026, 12, 5, 3, 4, 5, tzinfo=timezone.utc), datetime(1970, 1, 2, tzinfo=timezone.utc)]
client = connect(Settings.from_env().clickhouse)
client.execute("DROP TABLE IF EXISTS driver_dates")
client.execute("CREATE TABLE driver_dates (d Date, t DateTime('UTC')) ENGINE = Memory")
client.execute("INSERT INTO driver_dates (d, t) VALUES", [(d, times[i % 2]) for i, d in enumerate(days)])
rows = client.execute("SELECT d, t, toString(d) FROM driver_dates ORDER BY d")
client.execute("DROP TABLE driver_dates")
json.dump({
    "filled": filled,
    "days": [r[0].isoformat() for r in rows],
    "texts": [r[2] for r in rows],
    "times": [r[1].astimezone(timezone.utc).isoformat() for r in rows],
    "sent_days": [d.isoformat() for d in days],
    "sent_times": [times[i % 2].isoformat() for i in range(len(days))],
}, sys.stdout)
"""


def test_the_driver_fills_its_dates_on_demand_and_dates_round_trip(stack: PrivateStack) -> None:
    env = stack.process_env()
    env.pop("CLICKHOUSE_DRIVER_LASY_DATE_LUT", None)  # as a fresh process starts
    done = subprocess.run([sys.executable, "-c", ROUND_TRIP], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # 146,000 days and their reverse when filled at import (80 ms and 23 MB a process); a few once filled on demand
    assert seen["filled"] < 100, seen["filled"]
    assert seen["days"] == seen["sent_days"] == seen["texts"]  # read back as sent, and as the server prints them
    assert seen["times"] == seen["sent_times"]
