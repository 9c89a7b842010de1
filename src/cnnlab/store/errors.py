"""The store's errors, both `CnnlabError`s so the CLI prints them as one line."""

from __future__ import annotations

from cnnlab.errors import CnnlabError


class StoreError(CnnlabError):
    """The results store cannot be opened, read or written; the message says which and why."""


class ClaimLostError(StoreError):
    """A worker wrote to a run it no longer holds (its claim went stale and was taken over)."""
