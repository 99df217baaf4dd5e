"""What a client library's error about a server means, said the way driftloop says its own errors.

clickhouse-driver and kafka-python report a server that is down, a schema that was never applied or a
password that is wrong as ``Code: 210. Connection refused (127.0.0.1:9000)`` or ``Unable to bootstrap from
127.0.0.1:9092``, under a traceback. :func:`explain` turns such an error into an
:class:`~infra.errors.UnreachableError`, a :class:`~infra.errors.SchemaError` or a
:class:`~infra.errors.ServiceAccessError` that names the server, the setting that points at it and what to
do; the CLI prints it as one line (``cli.main``), and the services that wait for their servers log it.
Any other error is left alone (None): it is a fault to see whole.

>>> from clickhouse_driver.errors import NetworkError, ServerException
>>> from driftloop.infra.settings import Settings
>>> settings = Settings.from_env({"DRIFTLOOP_CLICKHOUSE_URL": "clickhouse://ops:pw@db.internal:9000/metrics"})
>>> print(explain(NetworkError("Connection refused (db.internal:9000)"), settings))
ClickHouse at db.internal:9000 does not answer (Connection refused (db.internal:9000)). Start the local stack ...
>>> print(explain(ServerException("Database metrics doesn't exist", code=81), settings))
ClickHouse at db.internal:9000 has no database metrics: its schema was never applied. `driftloop stack up` ...
>>> explain(ValueError("a bug"), settings) is None
True
"""

from __future__ import annotations

from clickhouse_driver.errors import ErrorCodes, NetworkError, ServerException
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from driftloop.infra.errors import DriftloopError, SchemaError, ServiceAccessError, UnreachableError
from driftloop.infra.settings import Settings

#: ClickHouse's codes for a user it does not know or a password it does not take (192-194: 18.x to 20.x;
#: 516: every server since, which no longer says which of the two).
_REFUSED_LOGIN = frozenset({ErrorCodes.UNKNOWN_USER, ErrorCodes.WRONG_PASSWORD, ErrorCodes.REQUIRED_PASSWORD, 516})


def explain(error: BaseException, settings: Settings) -> DriftloopError | None:
    """The clear error that ``error`` stands for when it says that a server does not answer, lacks the schema
    or refuses the login; None for anything else."""
    if isinstance(error, NetworkError):
        return unreachable_clickhouse(settings, error.message)
    if isinstance(error, ServerException):
        return _clickhouse_refusal(error, settings)
    if kafka_unreachable(error):
        return unreachable_kafka(settings, str(error))
    return None


def unreachable_clickhouse(settings: Settings, detail: str) -> UnreachableError:
    return UnreachableError(
        f"ClickHouse at {_clickhouse_address(settings)} does not answer ({detail}). Start the local stack with"
        " `driftloop stack up`, or point DRIFTLOOP_CLICKHOUSE_URL at your server."
    )


def unreachable_kafka(settings: Settings, detail: str) -> UnreachableError:
    return UnreachableError(
        f"Kafka at {settings.kafka_bootstrap} does not answer ({detail}). Start the local stack with"
        " `driftloop stack up`, or point DRIFTLOOP_KAFKA_BOOTSTRAP at your brokers."
    )


def kafka_unreachable(error: BaseException) -> bool:
    """Whether ``error`` is kafka-python's word that no broker answered: a client made while none does
    raises one after its bootstrap timeout."""
    if isinstance(error, KafkaConnectionError):
        return True
    return isinstance(error, KafkaTimeoutError) and "bootstrap" in str(error).lower()


def _clickhouse_refusal(error: ServerException, settings: Settings) -> DriftloopError | None:
    address, endpoint = _clickhouse_address(settings), settings.clickhouse
    if error.code == ErrorCodes.UNKNOWN_DATABASE:
        return SchemaError(
            f"ClickHouse at {address} has no database {endpoint.database}: its schema was never applied."
            " `driftloop stack up` applies it (the migrations run on every start), against an external server too."
        )
    if error.code == ErrorCodes.UNKNOWN_TABLE:
        return SchemaError(
            f"ClickHouse at {address} lacks a table driftloop uses ({_first_line(error.message)}): its schema is"
            " older than this driftloop. `driftloop stack up` applies the missing migrations."
        )
    if error.code in _REFUSED_LOGIN:
        return ServiceAccessError(
            f"ClickHouse at {address} refused user {endpoint.user!r} ({_first_line(error.message)}): check the"
            " user and password in DRIFTLOOP_CLICKHOUSE_URL."
        )
    return None


def _clickhouse_address(settings: Settings) -> str:
    return f"{settings.clickhouse.host}:{settings.clickhouse.port}"


def _first_line(message: str) -> str:
    """A server message without the stack trace ClickHouse appends to it."""
    return message.split(". Stack trace", 1)[0].splitlines()[0].strip() if message else message
