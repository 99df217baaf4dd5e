"""The serving client: predictions from the versions that serve a model now, following every change live.

``ModelClient("fraud")`` loads the versions the registry routes the model to (each artifact verified against
the registry's sha256) and predicts on a batch of rows (a DataFrame or dicts):

- the **champion** answers every request but a canary's;
- a **canary** answers its share of requests, chosen from the request id (:func:`canary_bucket`: the same
  request always goes to the same version, whichever client serves it);
- a **shadow** version scores every request too, but its answers are never returned: with ``emit=True``
  they are published with ``served = false`` and the same ``request_id``, so the outcome judges both
  (without ``emit`` it scores nothing: its answers would go nowhere). It is scored on a thread of its own
  (:mod:`models.shadow`): ``predict`` returns without waiting for it, and a shadow that cannot keep up
  leaves requests unscored (``shadow_dropped``) rather than slow the caller down; :meth:`ModelClient.flush`
  waits for what it holds.

A background thread listens on ``model-versions``; when a stage changes it reads the routing again, loads and
verifies what is new, then swaps one reference: a batch always runs on one routing, and no request fails during a
swap (a version that does not verify is refused, the current routing stays); a client started while Kafka is down
serves the routing it read and follows the changes once a broker answers; one started while ClickHouse does not
answer serves the routing the registry saved beside the artifacts at the model's last change (``routing_stale``
until ClickHouse answers). A change it could not read (ClickHouse away at that moment) is read again every
:data:`RETRY_S` until it is, and the routing is read every :data:`RECHECK_S` besides: a change whose announcement
never came (the broker away when it was made) is served within that. With ``emit=True`` every prediction is
published with ``latency_ms``, the time the client took for the batch.

A client made before the process forks (gunicorn's ``--preload``, uWSGI, Celery's prefork pool) serves in each
child: the first call there starts the child's own threads and connections (``infra.forks``), and torch runs on
one thread (:func:`~models.inference.one_thread_after_fork`).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from kafka import KafkaConsumer

from driftloop.infra.contract import EventError, VersionAnnouncement
from driftloop.infra.errors import DriftloopError
from driftloop.infra.forks import ForkWatch
from driftloop.infra.kafka.waiting import when_kafka_answers
from driftloop.infra.settings import Settings, get_settings
from driftloop.models.artifacts import LoadedModel
from driftloop.models.inference import one_thread_after_fork, predict_columns
from driftloop.models.preprocess import Preprocessor
from driftloop.models.registry import ModelRegistry, Routing, VersionRecord
from driftloop.models.shadow import MAX_ROWS_WAITING, ShadowScorer
from driftloop.streams.python_values import plain_id, present_value

log = logging.getLogger("driftloop.serving")


class NoChampionError(DriftloopError):
    """The model has no champion version yet."""


class ServingInputError(DriftloopError, ValueError):
    """Rows or request ids given to ``ModelClient.predict`` that it cannot score or publish as they are."""


class ServingDeviceError(DriftloopError, ValueError):
    """A ``device`` the serving client cannot run its networks on (not a torch device, or not on this machine)."""


def serving_device(device: str) -> str:
    """The torch device ``device`` names, checked before any version is loaded: ``"auto"`` is the first GPU
    where torch sees one, else the CPU; a name torch does not know, or a GPU this machine lacks, is a
    :class:`ServingDeviceError` saying what it has (torch raised an ``AssertionError`` at the first load).

    >>> serving_device("cpu"), serving_device("auto") in ("cpu", "cuda:0")
    ('cpu', True)
    """
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(device)
        torch.empty(0, device=chosen)  # a device torch knows and this machine lacks raises here
        if chosen.type == "meta":
            raise RuntimeError("a meta tensor holds no values")
    except (RuntimeError, TypeError, AssertionError) as exc:
        why = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ServingDeviceError(
            f"device {device!r} cannot run here ({why}): use 'cpu', or 'auto' (a GPU where torch sees one)"
        ) from None
    return str(chosen)


@dataclass(frozen=True)
class Predictions:
    """A batch's predictions, the probability of each predicted class (NaN for regression), and the version
    that answered each request (``versions``; ``version``: the champion's)."""

    model: str
    version: int
    values: list[Any]
    scores: list[float]
    request_ids: list[str]
    versions: list[int]
    latency_ms: float = 0.0


def canary_bucket(model: str, request_id: str) -> float:
    """Where a request falls in [0, 1): a canary with share s serves the requests below s.

    Deterministic (the same request, the same version, on every client and after restarts) and uniform.

    >>> canary_bucket("fraud", "r-1") == canary_bucket("fraud", "r-1"), 0 <= canary_bucket("fraud", "r-2") < 1
    (True, True)
    """
    digest = hashlib.blake2b(f"{model}\x1f{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class _Serving:
    """The loaded versions of one routing: swapped as a whole."""

    champion: LoadedModel
    shadow: LoadedModel | None = None
    canary: LoadedModel | None = None
    canary_share: float = 0.0


#: Seconds between tries to read a routing that changed and could not be read.
RETRY_S = 2.0
#: Seconds between readings of the routing with no announcement (a change whose announcement was lost).
RECHECK_S = 60.0


class ModelClient:
    """Predicts with the versions that serve a model and follows their stages (see the module docstring).

    ``emit``: publish every prediction (and score the shadow); ``watch``: follow stage changes live;
    ``device``: where the networks run (``"auto"``: a GPU where torch sees one); ``shadow_max_waiting``:
    requests that may wait for the shadow before new ones go without its answers; ``spread`` and ``compression``:
    how the published predictions go (``EventProducer``'s: a busy model's spread over partitions, and so over
    the streams workers, ``docs/scaling.md``)."""

    def __init__(
        self,
        model: str,
        settings: Settings | None = None,
        *,
        emit: bool = False,
        watch: bool = True,
        device: str = "cpu",
        shadow_max_waiting: int = MAX_ROWS_WAITING,
        spread: int = 1,
        compression: str | None = None,
    ) -> None:
        self.model = model
        self.settings = settings or get_settings()
        self.device = serving_device(device)
        self._arguments: dict[str, Any] = dict(
            emit=emit, watch=watch, device=self.device, shadow_max_waiting=shadow_max_waiting, spread=spread,
            compression=compression,
        )  # fmt: skip
        self.registry = ModelRegistry(self.settings)
        self._refusals: set[str] = set()  # versions refused, said once (the routing is read again every minute)
        routing, saved = self.registry.serving_routing(model)
        if routing.champion is None:
            raise NoChampionError(
                f"{model} has no champion yet: train one with `driftloop retrain --model {model} --now`"
            )
        self._serving = self._load(routing, None)
        self.swaps = 0
        self.routing_stale = saved is not None  # the routing changed (or may have) and could not be read yet
        self._routing_read_at = time.monotonic()
        if saved is not None:
            log.error(
                "ClickHouse does not answer: serving the routing saved at the model's last change, and reading it "
                "again every few seconds",
                extra={"fields": {"model": model, "saved_at": saved.saved_at, **self.routing}},
            )
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._producer = None
        self._shadow: ShadowScorer | None = None
        if emit:
            from driftloop.streams.producer import (
                EventProducer,  # the loop closes here: served predictions are monitored
            )

            # it starts again in a forked process by itself
            self._producer = EventProducer(self.settings, spread=spread, compression=compression)
            self._shadow = self._shadow_scorer()
        self._process = ForkWatch()
        if self._shadow is not None:  # run at exit before the producer's own hook (atexit runs the last first)
            self._exit_hook = functools.partial(_drain_shadow_at_exit, weakref.ref(self))
            atexit.register(self._exit_hook)
        if watch:
            self._follow()
            self._ready.wait(timeout=30)

    def _shadow_scorer(self) -> ShadowScorer:
        # self._score looked up at each batch: what a test counts or replaces is what the shadow runs
        return ShadowScorer(
            lambda loaded, frame: self._score(loaded, frame),
            lambda records, values, scores, ids, versions, ms: self._emit(
                records, values, scores, ids, versions, False, ms
            ),
            max_rows_waiting=self._arguments["shadow_max_waiting"],
        )

    def _follow(self) -> None:
        """Follow the registry's changes on a thread of its own (:meth:`_watch`)."""
        threading.Thread(target=self._watch, name=f"driftloop-watch-{self.model}", daemon=True).start()

    def _start_in_child(self, *, follow: bool = True) -> None:
        """In a process forked from the one that made this client (gunicorn's ``--preload``, uWSGI's default,
        Celery's prefork pool): the loaded versions serve on as they are, with torch on one thread
        (:func:`~models.inference.one_thread_after_fork`), a registry, a shadow scorer and a
        thread following the registry of its own; the inherited ones are left to the parent (``infra.forks``).
        The routing is read again once the new thread follows the changes."""
        if torch.device(self.device).type == "cuda":
            raise ServingDeviceError(
                f"the serving client of {self.model} was made on {self.device} before this process was forked, "
                "and CUDA cannot be used again in a forked process: make the client in each worker (gunicorn "
                "without --preload, uWSGI with lazy-apps), or serve on cpu"
            )
        one_thread_after_fork()
        self.registry = ModelRegistry(self.settings)
        if self._shadow is not None:
            self._shadow = self._shadow_scorer()
        closed = self._stop.is_set() or not follow
        self._stop, self._ready = threading.Event(), threading.Event()
        if closed:
            self._stop.set()
        elif self._arguments["watch"]:
            self._follow()

    def __reduce__(self) -> tuple[Any, ...]:
        """A client handed to another process (``multiprocessing``'s spawn and forkserver starts: the default on
        macOS and, from Python 3.14, on Linux) is made there anew for the same model, settings and options: it
        loads and verifies the versions that serve the model then, and follows them from there."""
        return functools.partial(ModelClient, self.model, self.settings, **self._arguments), ()

    @property
    def version(self) -> int:
        """The champion's version."""
        return self._serving.champion.version

    @property
    def routing(self) -> dict[str, int | float | None]:
        """What serves now: the champion's, shadow's and canary's versions, and the canary's share."""
        return _routing_of(self._serving)

    def predict(
        self,
        rows: pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        request_ids: Sequence[str | int] | None = None,
    ) -> Predictions:
        """Predict on ``rows`` (a pandas or polars DataFrame, a pyarrow table, dicts, or one dict); ``request_ids``, one
        a row (given or made), route canary requests and join outcomes. ``ServingInputError`` before anything is scored
        or sent if the rows hold none of the model's features, the ids do not match the rows, or (with ``emit``) a
        column holds values no event can carry."""
        started = time.perf_counter()
        self._process.restart(self._start_in_child)
        serving = self._serving  # one reference read: the whole batch uses one routing
        frame = _frame(rows)
        _check_features(serving.champion.preprocessor, frame)
        ids = _request_ids(request_ids, len(frame))
        records = _records(frame) if self._producer is not None else None  # refused before anything is served
        canary = serving.canary
        if canary is not None and serving.canary_share > 0:
            to_canary = np.array([canary_bucket(self.model, r) < serving.canary_share for r in ids], dtype=bool)
        else:
            to_canary = np.zeros(len(frame), dtype=bool)
        values: list[Any] = [None] * len(frame)
        scores = np.full(len(frame), np.nan)
        versions = [serving.champion.version] * len(frame)
        for loaded, chosen in ((serving.champion, ~to_canary), (canary, to_canary)):
            if loaded is None or not chosen.any():
                continue
            positions = np.flatnonzero(chosen)
            part_values, part_scores = self._score(
                loaded, frame.iloc[positions] if len(positions) < len(frame) else frame
            )
            for position, value in zip(positions.tolist(), part_values.tolist(), strict=True):
                values[position] = value
                versions[position] = loaded.version
            scores[positions] = part_scores
        latency_ms = (time.perf_counter() - started) * 1000
        result = Predictions(self.model, serving.champion.version, values, scores.tolist(), ids, versions, latency_ms)
        if records is not None:
            self._emit(records, result.values, result.scores, ids, versions, True, latency_ms)
            # a shadow's answers are only ever published: without emit, scoring them was 0.4 ms a request for
            # nothing. A copy of the caller's own frame: it may change it once this returns.
            if serving.shadow is not None and self._shadow is not None:
                self._shadow.submit(serving.shadow, frame.copy() if frame is rows else frame, records, ids)
        return result

    @property
    def shadow_dropped(self) -> int:
        """Requests the shadow version did not score because it could not keep up (:mod:`models.shadow`)."""
        return self._shadow.dropped if self._shadow is not None else 0

    def flush(self, timeout_s: float | None = 30.0) -> None:
        """Wait until the shadow has scored what it was handed, then until the broker has every event published
        (``DeliveryError`` if some failed). Nothing to do without ``emit``."""
        self._process.restart(self._start_in_child)
        if self._shadow is not None and not self._shadow.drain(timeout_s):
            log.warning("the shadow version still scores: flushed without its latest answers")
        if self._producer is not None:
            self._producer.flush(timeout_s)

    def close(self) -> None:
        """Stop following the registry; with ``emit``, publish what the shadow holds, then every event."""
        # a forked process closes its own connections, not the parent's (and follows nothing: it is closing)
        self._process.restart(lambda: self._start_in_child(follow=False))
        self._stop.set()
        if self._shadow is not None:
            atexit.unregister(self._exit_hook)
        if self._shadow is not None:
            self._shadow.close()
        if self._producer is not None:
            self._producer.close()
        self.registry.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- scoring ---------------------------------------------------------------------------------------

    def _score(self, loaded: LoadedModel, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        pre = loaded.preprocessor
        numeric, categorical = served_columns(pre, frame)
        values, scores = predict_columns(loaded.network, pre, numeric, categorical, self.device)
        return values, np.asarray(scores, dtype=np.float64)

    def _emit(
        self,
        records: list[dict[str, Any]],
        values: list[Any],
        scores: list[float],
        ids: list[str],
        versions: list[int],
        served: bool,
        latency_ms: float,
    ) -> None:
        assert self._producer is not None
        for features, value, score, request_id, version in zip(records, values, scores, ids, versions, strict=True):
            self._producer.emit_prediction(
                self.model,
                request_id=request_id,
                features=features,
                prediction=value,
                score=None if score != score else score,
                model_version=version,
                served=served,
                latency_ms=latency_ms,
            )

    # --- following the registry ------------------------------------------------------------------------

    def _load(self, routing: Routing, current: _Serving | None) -> _Serving:
        """The loaded versions of ``routing``, reusing those already loaded; raises if the champion does not
        verify, drops a shadow or canary that does not (logged)."""
        loaded = {v.version: v for v in (current.champion, current.shadow, current.canary) if v} if current else {}
        assert routing.champion is not None
        champion = loaded.get(routing.champion.version) or self.registry.load(routing.champion, device=self.device)
        canary = self._optional(routing.canary, loaded)
        shadow = self._optional(routing.shadow, loaded)
        return _Serving(champion, shadow, canary, routing.canary_share if canary else 0.0)

    def _optional(self, record: VersionRecord | None, loaded: dict[int, LoadedModel]) -> LoadedModel | None:
        """A shadow or canary version, loaded and verified; None (logged) if it does not verify."""
        if record is None or record.version in loaded:
            return loaded.get(record.version) if record else None
        try:
            return self.registry.load(record, device=self.device)  # verified before it may score
        except DriftloopError as exc:
            self._refuse("a version refused; not serving it", exc, version=record.version)
            return None

    def _refuse(self, message: str, error: DriftloopError, **fields: Any) -> None:
        """An ERROR for a refusal, once: the routing is read again every :data:`RECHECK_S`, and refused again."""
        if str(error) not in self._refusals:
            self._refusals.add(str(error))
            log.error(message, extra={"fields": {**fields, "error": str(error)}})

    def _watch(self) -> None:
        consumer = when_kafka_answers(
            lambda: KafkaConsumer(
                self.settings.topics.model_versions,
                **self.settings.kafka_python_config(),
                auto_offset_reset="latest",
                enable_auto_commit=False,
            ),
            self.settings,
            who=f"the serving client of {self.model}",
            stop=self._stop.is_set,
            on_wait=self._ready.set,  # it serves its champion meanwhile, and follows the versions once Kafka answers
            between_tries=self._read_routing_when_due,  # and reads the routing as it would with Kafka there
        )
        if consumer is None:  # closed before a broker answered
            return
        try:
            deadline = time.monotonic() + 30
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(timeout_ms=100)
            for partition in consumer.assignment():
                consumer.position(partition)  # where "the end" is, fixed before we say we are ready
            self._refresh()  # a change announced while we were joining
            self._routing_read_at = time.monotonic()
            self._ready.set()
            while not self._stop.is_set():
                changed = any(
                    self._concerns_us(record.value)
                    for records in consumer.poll(timeout_ms=500).values()
                    for record in records
                )
                self._read_routing_when_due(changed)
        except Exception:
            log.exception("stopped following model versions")
        finally:
            self._ready.set()
            consumer.close()

    def _read_routing_when_due(self, changed: bool = False) -> None:
        """Read the routing on an announced change, every :data:`RECHECK_S` (an announcement lost), and every
        :data:`RETRY_S` while it could not be read: also while Kafka does not answer (before, a client started
        with Kafka and ClickHouse both away served its saved routing until Kafka answered, ClickHouse back)."""
        since = time.monotonic() - self._routing_read_at
        if changed or since >= RECHECK_S or (self.routing_stale and since >= RETRY_S):
            self._refresh()
            self._routing_read_at = time.monotonic()

    def _concerns_us(self, value: bytes) -> bool:
        try:
            return VersionAnnouncement.from_json(json.loads(value)).model == self.model
        except ValueError:  # EventError included: not an announcement
            return False

    def _refresh(self) -> None:
        """Read the routing again and swap to it (one reference assignment, between batches); one that cannot be
        read leaves the client ``routing_stale`` (read again every :data:`RETRY_S`)."""
        try:
            routing = self.registry.routing(self.model)
            if routing.champion is None:
                self.routing_stale = False
                return
            serving = self._load(routing, self._serving)
        except DriftloopError as exc:  # a version that does not verify: reading it again would not change that
            self.routing_stale = False
            self._refuse("new routing refused; serving the current one", exc)
            return
        except Exception as exc:
            if not self.routing_stale:  # said once, not every retry
                log.error(
                    "could not read the routing; serving the current one and trying again",
                    extra={"fields": {"model": self.model, "error": f"{type(exc).__name__}: {exc}"}},
                )
            self.routing_stale = True
            return
        if self.routing_stale:
            log.warning("the routing is read again", extra={"fields": {"model": self.model}})
        self.routing_stale = False
        before = self._serving
        self._serving = serving
        if serving.champion.version != before.champion.version:
            self.swaps += 1
            log.warning(
                "swapped to a new champion",
                extra={"fields": {"model": self.model, "version": serving.champion.version}},
            )
        if self.routing != _routing_of(before):
            log.info("routing changed", extra={"fields": {"model": self.model, **self.routing}})


def _drain_shadow_at_exit(client: weakref.ref[ModelClient]) -> None:
    """The atexit hook of a client with a shadow, not closed: the shadow publishes the answers it holds, for up to
    the producer's ``EXIT_FLUSH_S`` (whose own hook sends them next); not in a forked process that never served."""
    from driftloop.streams.producer import EXIT_FLUSH_S

    alive = client()
    if alive is None or alive._shadow is None or alive._process.in_new_process():
        return
    if not alive._shadow.drain(EXIT_FLUSH_S):
        log.warning("the process exited before the shadow version scored every request it was handed")


def served_columns(pre: Preprocessor, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
    """The numeric and categorical columns of served rows, as training had them (``retrain.dataset``: the events'
    numbers and texts as they landed). A missing value (left out, ``None``, ``NaN``) is NaN as a number and ""
    as a category. A feature the network learnt both ways (sent as numbers and as text: "unknown" among ages)
    takes a row's number as a number and its text as a category, each missing from the other side; a numeric
    feature alone reads a text as the number it spells, else as missing (``"12.50"``, ``"unknown"``)."""
    both = set(pre.numeric) & set(pre.categorical)
    numeric: dict[str, np.ndarray] = {}
    for name in pre.numeric:
        if name not in frame:
            continue
        column = frame[name]
        if name in both and column.dtype == object:
            column = column.map(lambda v: v if _is_number(v) else np.nan)
        numeric[name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    categorical: dict[str, list[Any]] = {}
    for name in pre.categorical:
        if name not in frame:
            categorical[name] = [""] * len(frame)
            continue
        numbers_elsewhere = name in both
        categorical[name] = [
            "" if _is_missing(v) or (numbers_elsewhere and _is_number(v)) else v for v in frame[name].tolist()
        ]
    return numeric, categorical


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float | np.floating) and value != value)


def _routing_of(serving: _Serving) -> dict[str, int | float | None]:
    return {
        "champion": serving.champion.version,
        "shadow": serving.shadow.version if serving.shadow else None,
        "canary": serving.canary.version if serving.canary else None,
        "canary_share": serving.canary_share,
    }


def _frame(rows: pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, Mapping):
        return pd.DataFrame([rows])  # one row, not a row per key
    if callable(convert := getattr(rows, "to_pandas", None)):  # a polars DataFrame, a pyarrow Table or batch
        frame = convert()
        if isinstance(frame, pd.DataFrame):
            return frame
    items = list(rows)
    if not all(isinstance(item, Mapping) for item in items):
        kinds = sorted({type(item).__name__ for item in items if not isinstance(item, Mapping)})
        raise ServingInputError(
            f"rows must be a DataFrame (pandas, polars or a pyarrow table), a dict (one row) or a sequence of "
            f"dicts of feature name → value, got items of {', '.join(kinds)}"
        )
    return pd.DataFrame(items)


def _check_features(pre: Preprocessor, frame: pd.DataFrame) -> None:
    """A batch without any of the model's features would be scored on defaults alone: refused."""
    features = [*pre.numeric, *(c for c in pre.categorical if c not in pre.numeric)]
    if len(frame) and features and not any(name in frame.columns for name in features):
        columns = ", ".join(map(str, frame.columns[:8]))
        raise ServingInputError(
            f"none of the model's features ({', '.join(features[:8])}) is among the rows' columns ({columns}): "
            "pass rows keyed by feature name"
        )


def _request_ids(given: Sequence[Any] | None, rows: int) -> list[str]:
    if given is None:
        return [uuid.uuid4().hex for _ in range(rows)]
    ids = [plain_id(r) for r in given]
    if len(ids) != rows:
        raise ServingInputError(f"{len(ids)} request ids for {rows} rows: give one id a row")
    wrong = [r for r in ids if not isinstance(r, str) or not r]
    if wrong:
        raise ServingInputError(f"request ids must be texts or integers, got {wrong[0]!r} ({type(wrong[0]).__name__})")
    return ids


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row's features as an event carries them; a column that holds a value no event can (a time, bytes,
    a list, an infinity) is named."""
    columns = [str(c) for c in frame.columns]
    values = [frame.iloc[:, i].tolist() for i in range(len(columns))]
    plain: list[list[Any]] = []
    for name, column in zip(columns, values, strict=True):
        try:
            plain.append([_feature(v) for v in column])
        except EventError as exc:
            raise ServingInputError(
                f"column {name!r} cannot be sent as an event feature: {exc}; drop the column or convert its values "
                "to numbers, texts, booleans or None (a time to epoch seconds or text)"
            ) from None
    return [dict(zip(columns, row, strict=True)) for row in zip(*plain, strict=True)] if plain else [{}] * len(frame)


def _feature(value: Any) -> Any:
    plain = present_value(value)
    if isinstance(plain, float) and plain - plain != 0.0:
        raise EventError(f"{value!r} is not a finite number")
    return plain
