"""The one error replay reports to its user as a sentence, not a traceback."""

from __future__ import annotations


class ReplayError(Exception):
    """The file cannot be replayed (or the replay cannot go on); the message says why."""
