"""Shared fixtures come from pytest plugins (registered here, once): tests/ and suites."""

import os

# Prefect logs "Stopping temporary server" at interpreter exit, after pytest has closed
# the stream it captured; at WARNING that line is never written.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

# conformance/: the session fixtures of the importable conformance suites.
pytest_plugins = [
    "tests.s3_server",
    "tests.docker_daemons",
    "conformance.scanners",
    "conformance.hosts",
]
