"""The streams worker's app for Faust's own CLI: ``faust -A driftloop.streams.app worker -l info``."""

from __future__ import annotations

from driftloop.infra.settings import get_settings
from driftloop.streams.gc_tuning import collect_less_often
from driftloop.streams.malloc_tuning import keep_freed_memory
from driftloop.streams.worker import build_worker_app

app = build_worker_app(get_settings())
collect_less_often()  # as `driftloop worker` does (streams.gc_tuning, streams.malloc_tuning)
keep_freed_memory()
