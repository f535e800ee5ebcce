"""Container HEALTHCHECK: exit 0 if a MedChain server's /healthz answers 200.

    python healthcheck.py [URL]

URL defaults to $MEDCHAIN_HEALTHCHECK_URL, else https://localhost:8700/healthz (the
node's gateway). The certificate is checked against $MEDCHAIN_CA, else the home's
development CA ($MEDCHAIN_HOME/tls/ca.pem), else the system's trust store.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URL = "https://localhost:8700/healthz"


def trusted_ca() -> str | None:
    """The CA file to verify the server with, if there is one."""
    explicit = os.environ.get("MEDCHAIN_CA")
    if explicit:
        return explicit
    home_ca = Path(os.environ.get("MEDCHAIN_HOME", "/var/lib/medchain")) / "tls" / "ca.pem"
    return str(home_ca) if home_ca.exists() else None


def main() -> int:
    """Probe the URL once; 0 healthy, 1 not (the reason on stderr)."""
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MEDCHAIN_HEALTHCHECK_URL", "")
    context = ssl.create_default_context(cafile=trusted_ca())
    try:
        with urllib.request.urlopen(url or DEFAULT_URL, timeout=4, context=context) as answer:
            status = int(answer.status)
    except (urllib.error.URLError, OSError) as e:
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
