"""How `flchain server` hands the coordinator's keystore password to its ServerApp without putting it in
any process's environment: the SuperLink, its SuperExec and every app process they start would inherit
it, and /proc/PID/environ is readable for as long as such a process lives. Instead the password goes
into a file only its owner can read (0600, in the run's directory); the environment carries only that
file's path, and the ServerApp reads the file once and deletes it, so no process started later (another
run, a second app) finds it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from fl_chain.errors import FlchainError

PASSWORD_FILE_ENV = "FLCHAIN_KEY_PASSWORD_FILE"
_handed: dict[str, str] = {}  # path -> password, for the process that took it (it decrypts once or twice)


def hand_over_password(path: Path, password: str) -> dict[str, str]:
    """Write `password` to `path` (0600, replacing any earlier file) and return the environment entry
    that names it for the ServerApp."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password)
    return {PASSWORD_FILE_ENV: str(path)}


def discard_password(path: Path) -> None:
    """Delete a handed-over password file that the ServerApp never took (a run that failed early)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def handed_password() -> str | None:
    """The password `flchain server` handed this process (read once, the file deleted), or None when
    it handed none (then the keystore's password comes from FLCHAIN_KEY_PASSWORD, as for any tool)."""
    name = os.environ.get(PASSWORD_FILE_ENV)
    if not name:
        return None
    if name in _handed:
        return _handed[name]
    path = Path(name)
    try:
        password = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlchainError(
            f"{PASSWORD_FILE_ENV} names {path}, which is gone: the password is handed to one ServerApp "
            "only; start the run again with `flchain server`"
        ) from None
    except OSError as exc:
        raise FlchainError(f"{PASSWORD_FILE_ENV}: cannot read {path} ({exc.strerror})") from None
    path.unlink(missing_ok=True)
    _handed[name] = password
    return password
