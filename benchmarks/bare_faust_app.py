"""A bare Faust agent for the ingest benchmark: takes batches, decodes JSON, counts, and does nothing else.

Stock Faust (``faust.App``, not driftloop's transport of ``streams.compat.faust``), with the options the
worker's app has (fetch size, group timeouts).

It records (first message time, time it saw the Nth event) in BENCH_OUT. Run by benchmarks/ingest.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import faust

from driftloop.infra.settings import Settings
from driftloop.streams.app_factory import app_options

settings = Settings.from_env()
expected = int(os.environ["BENCH_EVENTS"])
out = Path(os.environ["BENCH_OUT"])
app_id = os.environ.get("BENCH_GROUP", "bench-bare-faust")
options = app_options(settings, app_id)
Path(options["datadir"]).parent.mkdir(parents=True, exist_ok=True)
app = faust.App(app_id, **options)
seen = {"n": 0, "first": 0.0}


@app.agent(app.topic(settings.topics.predictions), concurrency=1)
async def count(stream):  # type: ignore[no-untyped-def]
    async for values in stream.take(2000, within=0.5):
        if not seen["first"]:
            seen["first"] = time.time()
        for value in values:
            doc = json.loads(value)
            seen["n"] += len(doc["events"]) if "events" in doc else 1
        if seen["n"] >= expected:
            out.write_text(json.dumps({"first": seen["first"], "last": time.time(), "events": seen["n"]}))
