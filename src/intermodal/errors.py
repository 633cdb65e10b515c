"""One error hierarchy for the whole engine, mapped once to CLI exit codes (Docker's) and HTTP statuses.

Every error message is one line that names the bad input and says what to do about it.
"""

from __future__ import annotations


class IntermodalError(Exception):
    """Base of every error the engine raises on purpose. Exit code 125 like Docker's engine errors."""

    exit_code = 125
    http_status = 500


class InvalidArgument(IntermodalError):
    """The user gave a value we cannot use (bad reference, bad flag value, malformed file)."""

    http_status = 400


class NotFound(IntermodalError):
    """An image, container, blob or other named object does not exist."""

    http_status = 404


class Conflict(IntermodalError):
    """The operation clashes with existing state (name in use, image in use by a container)."""

    http_status = 409


class CorruptContent(IntermodalError):
    """Stored or received bytes do not match their digest or size."""


class UnsafeContent(IntermodalError):
    """Untrusted input (a layer, config or archive) tried to reach outside where it belongs."""

    http_status = 400


class CannotInvoke(IntermodalError):
    """The container command exists but cannot be executed (Docker's exit 126)."""

    exit_code = 126


class CommandNotFound(IntermodalError):
    """The container command does not exist (Docker's exit 127)."""

    exit_code = 127


class RegistryError(IntermodalError):
    """A registry refused a request or could not be reached; the message carries the registry's own words.

    Exit 1 like `docker pull`/`docker push`, whose failures all come back from the daemon."""

    exit_code = 1
    http_status = 502

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.http_status = status
