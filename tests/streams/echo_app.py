"""A test-only Faust app: one agent on the predictions topic that appends every message to a file.

Run as ``python -m faust -A tests.streams.echo_app worker`` with the stack's DRIFTLOOP_* environment,
plus ECHO_APP_ID (its consumer group) and ECHO_OUT (the file).
"""

from __future__ import annotations

import os
from pathlib import Path

from driftloop.infra.settings import Settings
from driftloop.streams.app_factory import create_app

settings = Settings.from_env()
app = create_app(settings, app_id=os.environ["ECHO_APP_ID"])
source = app.topic(settings.topics.predictions, partitions=settings.topic_partitions)
out = Path(os.environ["ECHO_OUT"])


@app.agent(source)
async def echo(stream):  # type: ignore[no-untyped-def]
    async for batch in stream.take(100, within=0.2):
        with out.open("ab") as f:
            f.write(b"".join(value + b"\n" for value in batch))
