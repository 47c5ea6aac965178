"""The errors the knowledge services raise."""

from django.db import InterfaceError, OperationalError

from core.errors import Conflict, InvalidInput, ObjectNotFound, PayloadTooLarge

# Errors of the database connection are worth a retry; anything else about a document is final.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class DocumentNotFound(ObjectNotFound):
    """No such document."""


class CollectionNotFound(ObjectNotFound):
    """No such collection."""


class DocumentTooLarge(PayloadTooLarge):
    """The file is larger than the upload limit."""


class EmptyDocument(InvalidInput):
    """The file is empty."""


class ReembedInProgress(Conflict):
    """The collection is already being re-embedded."""
