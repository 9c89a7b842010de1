"""The errors a user can cause, each carrying a message that says what to do.

The CLI prints `str(error)` as one line and exits non-zero; tracebacks only with --debug.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """Base of every error caused by input, files or the environment (not by a bug)."""


class SpecError(CnnlabError):
    """A model or study spec is invalid; raised before anything trains."""


class DataError(CnnlabError):
    """A dataset file is missing, corrupt, or cannot be downloaded."""


class StudyError(CnnlabError):
    """A study cannot start or go on (disk space, workers, executor); the message says why."""
