"""RunSpec: what `flchain server` hands the Deployment Engine's ServerApp (a JSON file whose path travels
in the Flower run config), and where the ServerApp writes its run events back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fl_chain.config import RunConfig
from fl_chain.errors import FlchainError

RUN_CONFIG_KEY = "flchain-run"  # Flower run-config key holding the RunSpec file's path


@dataclass(frozen=True)
class RunSpec:
    """A federated run as the ServerApp needs it."""

    config: RunConfig
    home: Path  # state directory (deployment file, store)
    events: Path  # JSON-lines run events (wire/report.py), read by `flchain server`
    resume_task: int | None = None

    def write(self, path: Path) -> None:
        """Write the spec as JSON."""
        data = {
            "config": json.loads(self.config.to_json()),
            "home": str(self.home),
            "events": str(self.events),
            "resume_task": self.resume_task,
        }
        path.write_text(json.dumps(data))

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        """Inverse of `write`, with a one-line error naming the file."""
        try:
            data = json.loads(path.read_text())
            return cls(
                RunConfig.from_json(json.dumps(data["config"])),
                Path(data["home"]),
                Path(data["events"]),
                data.get("resume_task"),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise FlchainError(f"run file {path}: unreadable ({type(exc).__name__}: {exc})") from None
