"""A model server that ends without closing its client, run by ``tests/release/test_serving.py`` as
``python -m tests.release.exiting_client MODEL ROWS``: ``ModelClient(emit=True)`` serves ``ROWS`` requests in
batches of 50 (its model has a shadow version, scored on the client's own thread) and the process exits at
once (``sys.exit``), as a recycled worker or a stopped pod does."""

from __future__ import annotations

import sys

from driftloop.models.serving import ModelClient
from tests.release.conftest import agrawal


def main(model: str, rows: int) -> None:
    client = ModelClient(model, emit=True)
    features, _ = agrawal(0, rows, seed=33)
    for start in range(0, rows, 50):
        client.predict(features[start : start + 50], request_ids=[f"x{i}" for i in range(start, start + 50)])
    sys.exit(0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
