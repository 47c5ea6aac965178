"""The base classes of every domain error. Each app defines its own errors next to the code that raises them,
as subclasses of these; `core.api_errors` maps the categories to HTTP statuses, once per API framework."""


class DomainError(Exception):
    """Something the caller asked for cannot be done; the message is safe to show to the caller."""

    def __init__(self, message: str = "", **details: object) -> None:
        super().__init__(message or self.__class__.__doc__ or self.__class__.__name__)
        self.message = message or (self.__class__.__doc__ or self.__class__.__name__).strip()
        self.details = details


class ObjectNotFound(DomainError):
    """Not found."""


class AccessDenied(DomainError):
    """You may not do this."""


class InvalidInput(DomainError):
    """The input is not valid."""


class Conflict(DomainError):
    """The request conflicts with the current state."""


class PayloadTooLarge(DomainError):
    """The upload is larger than allowed."""


class RateLimited(DomainError):
    """Too many requests."""

    def __init__(self, message: str = "", *, retry_after: int = 1, **details: object) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    """A service this request needs is unavailable."""


class BadRequest(DomainError):
    """The request could not be understood."""


class ServerError(DomainError):
    """Something went wrong on the server. Please try again."""
