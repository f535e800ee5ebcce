"""Durable file writes shared by the layers that keep files beside the chain DB (the
edge's vault, consensus's state-sync snapshots). Imports no other layer."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def make_durable(directory: Path, paths: list[Path]) -> None:
    """Flush written files in `directory` and their names to disk: one syncfs(2) of
    its file system on Linux, else an fsync per file and of the directory. With no
    paths, only the directory itself (a rename or unlink in it) is flushed."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        if _libc is not None and _libc.syncfs(fd) == 0:
            return
        for path in paths:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        os.fsync(fd)
    finally:
        os.close(fd)
