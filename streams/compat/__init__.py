"""Where driftloop relies on libraries' private internals: one module per library (``faust``: faust-streaming and
mode, ``aiokafka``, ``river``, ``kafka_python``; clickhouse-driver's is ``infra.clickhouse.columnar_insert``), each
naming the versions it was written for in ``WRITTEN_FOR`` (the series pinned in pyproject.toml). Each is kept where a
benchmark or a guarantee needs it; ``tests/streams/test_library_internals.py`` fails when an installed version,
or a name relied on, changes."""
