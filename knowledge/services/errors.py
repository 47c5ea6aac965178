"""The errors of a document's import (documents.py) and indexing (indexing.py)."""

from core.errors import InvalidInput, ObjectNotFound, PayloadTooLarge


class DocumentNotFound(ObjectNotFound):
    """No such document."""


class DocumentTooLarge(PayloadTooLarge):
    """The file is larger than the upload limit."""


class EmptyDocument(InvalidInput):
    """The file is empty."""


class DocumentUnreadable(InvalidInput):
    """The file could not be read (an upload cut short, a file that vanished or may not be read)."""
