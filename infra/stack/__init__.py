"""The embedded local stack: a Tansu broker and a ClickHouse server that ``driftloop stack up`` starts."""
