"""The one exception type users see: a message fit for a single line, no traceback."""

from __future__ import annotations

from pathlib import Path


class FlchainError(Exception):
    """An error caused by input or environment that the user can fix; printed as one line."""


def read_text_file(path: Path, what: str) -> str:
    """The text of a state or config file, or a one-line error naming it (unreadable, not UTF-8)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FlchainError(f"{path}: not a {what} (not UTF-8 text at byte {exc.start})") from None
    except OSError as exc:
        raise FlchainError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
