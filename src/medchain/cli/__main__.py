"""`python -m medchain.cli`: the same app as the `medchain` console script."""

from medchain.cli.main import app

app()
