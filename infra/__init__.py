"""Foundation of driftloop: settings, errors, the ClickHouse schema, Kafka topics and the local stack.

``infra`` sits underneath everything else and imports nothing of driftloop above it (``make lint`` checks the
layers with import-linter: ``.importlinter``).

Importing it asks clickhouse-driver, where it is not told otherwise, to fill its table of dates as they are
met rather than for every day from 1900 to 2299 when it is first imported: that table, and its reverse, cost
each process that imports the driver 80 ms and 23 MB (the worker runs four), and the values are the same
(``tests/infra/test_driver_dates.py``). The packages whose modules import the driver import ``infra`` first.
"""

import os

# the driver's own spelling; a range of one day to fill at once, the rest on demand
os.environ.setdefault("CLICKHOUSE_DRIVER_LASY_DATE_LUT", "1970-01-01:1970-01-01")
