"""One error family for bad data: every reader raises a `DataError` whose message names the file
and what was expected.

- `SequenceFormatError`: a file or folder is there but does not have the expected layout or content.
- `DataNotFoundError`: a dataset's folder or file is absent (also a ``FileNotFoundError``).
"""


class DataError(Exception):
    """Data that cannot be used as given; the message names the file and what was expected."""


class SequenceFormatError(DataError, ValueError):
    """A sequence (or a file in it) does not have the expected layout or content."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset's folder or file is absent; the message names the expected path and layout."""
