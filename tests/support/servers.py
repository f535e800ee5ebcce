"""Starting real server processes for tests: free ports, waiting until a server
answers, a node process, and the `medchain` command line run as a user would."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from medchain.node import free_port as node_free_port

free_port = node_free_port  # tests bind servers to fresh local ports


def wait_until_serving(
    proc: subprocess.Popen[bytes], url: str, verify: ssl.SSLContext | bool = True
) -> subprocess.Popen[bytes]:
    """Wait (up to 30 s) until a started server process answers `url` (an https URL
    checked with `verify`, e.g. medchain.sdk.tls.ClientTls(ca).context())."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(url, timeout=1, verify=verify).raise_for_status()
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    stderr = proc.stderr.read() if proc.stderr else b""
    raise AssertionError(f"{url} did not start: {stderr!r}")


def start_node(home: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medchain.cli",
            "node",
            "--home",
            str(home),
            "--port",
            str(port),
            "--block-interval",
            "0.05",
            "--insecure-http",  # TLS is beside the point here (tests/test_security_tls.py)
            # The load comes from one address as fast as the node takes it: no limits.
            "--rate=0",
            "--concurrency=0",
            "--max-waits=0",
            "--self-registration-rate=0",
            "--self-registration-gateway-rate=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return wait_until_serving(proc, f"http://127.0.0.1:{port}/v1/status")


def medchain(*args: str, passphrase: str = "correct horse") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDCHAIN_PASSPHRASE": passphrase, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "medchain.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
