"""What the tap relies on inside the Singer SDK where it has no public hook, each named once.

``tests/tap/test_sdk_internals.py`` fails when an SDK upgrade changes any of them, so an
upgrade breaks a test rather than the data. docs/development.md ("How the tap uses the SDK")
lists every workaround.
"""

from __future__ import annotations

import logging

# The logger the SDK's state helpers (singer_sdk/helpers/_state.py) write to.
SDK_LOGGER = "singer_sdk"
# Where, in a stream's state, the SDK keeps the high-water mark of a stream with is_sorted False.
PROGRESS_MARKERS = "progress_markers"
# The start of the warning the SDK logs for every stream with is_sorted False.
UNSORTED_WARNING = "Stream is assumed to be unsorted"


class HideUnsortedWarning(logging.Filter):
    """Hide the SDK's "progress is not resumable if interrupted" warning, which is untrue here.

    The SDK says so of every stream with ``is_sorted`` False; the tap's streams commit a
    resumable bookmark themselves (``streams.commit_bookmark``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the SDK's unsorted-stream warning."""
        return not str(record.msg).startswith(UNSORTED_WARNING)


def hide_unsorted_warning() -> None:
    """Install :class:`HideUnsortedWarning` on the SDK's logger, once (the tap does, at start)."""
    logger = logging.getLogger(SDK_LOGGER)
    if not any(isinstance(f, HideUnsortedWarning) for f in logger.filters):
        logger.addFilter(HideUnsortedWarning())
