"""Replay one vector on every engine in this process: `python -m support.replay
VECTOR.json` from tests/. Prints the departures per engine as JSON and exits 1
if any engine departs. tests/test_determinism.py runs it once per hash seed, so
nothing a replay depends on may follow the seed (set or dict-of-str order)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from support.vectors import REPLAYS, departures, load


def main(path: str) -> int:
    """Replay `path` on each engine; 0 when every engine matches the vector."""
    vector = load(Path(path))
    found: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for engine, replay in REPLAYS.items():
            got = replay(vector, Path(workdir) / f"{engine}.db")
            found[engine] = departures(vector["expected"], got)
    print(json.dumps(found, indent=1))
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
