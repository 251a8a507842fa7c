"""The target, its versions directory and the errors of publishing.

Shared by the modules :mod:`versions` is built on (its docstring describes
the layout on disk and the transactions); imports none of them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any


class VersionError(Exception):
    """Cannot proceed. The target serves what it served before: nothing
    was changed, or the switch was undone. ``state``, when set, says what
    the target serves (``None``: it was not touched)."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class SwitchedError(VersionError):
    """The target was switched, the operation could not be completed and
    the switch could not be undone: ``state`` says what it serves now."""


@dataclasses.dataclass(frozen=True)
class TargetState:
    """What the target path is right now.

    ``kind``: ``absent``, ``dangling`` (a symlink to nothing), ``link`` (a
    symlink to a directory) or ``dir`` (a plain directory, e.g. an artifact
    written there before publishing was used).
    """

    path: str
    kind: str
    link: str | None = None        # the symlink's text
    resolved: str | None = None    # the directory holding the artifact
    managed: bool = False          # resolved is one of our version dirs
    fingerprint: str | None = None  # of the artifact files, if any

    @property
    def name(self) -> str | None:
        """The version directory's name, for a managed target."""
        return os.path.basename(self.resolved) if self.managed else None


def normalise(target: str) -> str:
    # abspath, not realpath: the target is the symlink itself.
    return os.path.abspath(target)


def versions_dir(target: str) -> str:
    return normalise(target) + '.versions'


def _plain_name(name: Any) -> bool:
    """A single, printable path component that is not hidden."""
    return (isinstance(name, str) and 0 < len(name) <= 255
            and os.path.basename(name) == name and name.isprintable()
            and not name.startswith('.'))
