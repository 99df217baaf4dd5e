"""Foundation of driftloop: settings, errors, the ClickHouse schema, Kafka topics and the local stack.

``infra`` sits underneath everything else and imports nothing of driftloop above it (``make lint`` checks the
layers with import-linter: ``.importlinter``).
"""
