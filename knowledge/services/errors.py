"""The errors the knowledge services raise."""

from core.errors import Conflict, InvalidInput, ObjectNotFound, PayloadTooLarge


class DocumentNotFound(ObjectNotFound):
    """No such document."""


class CollectionNotFound(ObjectNotFound):
    """No such collection."""


class DocumentTooLarge(PayloadTooLarge):
    """The file is larger than the upload limit."""


class EmptyDocument(InvalidInput):
    """The file is empty."""


class DocumentUnreadable(InvalidInput):
    """The file could not be read (an upload cut short, a file that vanished or may not be read)."""


class ReembedInProgress(Conflict):
    """The collection is already being re-embedded."""


class WebSourceNotFound(ObjectNotFound):
    """No such web source."""
