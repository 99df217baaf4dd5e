"""Foundation of driftloop: settings, errors, the ClickHouse schema, Kafka topics, the local stack and the CLI.

``infra`` sits underneath everything else and imports none of ``streams``, ``retrain`` or ``models``.
"""
