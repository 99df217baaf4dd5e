"""One root exception for driftloop, with specific subclasses whose messages say what to do."""

from __future__ import annotations


class DriftloopError(Exception):
    """Root of every error driftloop raises on purpose.

    The CLI prints these as one clear message (no traceback) and exits non-zero.
    """


class SettingsError(DriftloopError):
    """An environment variable holds a value driftloop cannot use."""


class StackError(DriftloopError):
    """The embedded local stack cannot be started, reached or stopped."""


class PortTakenError(StackError):
    """A port the embedded stack needs is already used by another process."""


class BinaryNotFoundError(StackError):
    """A server binary the embedded stack needs is not installed."""


class ServiceStartError(StackError):
    """A server process started but did not come up (it exited or never answered)."""


class UnreachableError(StackError):
    """A configured service (embedded or external) does not answer."""


class ServiceAccessError(StackError):
    """A configured service answers but refuses driftloop's login (a user or password it does not take)."""


class SchemaError(DriftloopError):
    """The ClickHouse schema cannot be applied (a migration is malformed, changed after it ran, or failed), or
    was not applied where driftloop reads."""


class TopicProvisioningError(DriftloopError):
    """Kafka topics cannot be created or do not match the settings."""
