"""The Trivy fixture vulnerability DB: a bbolt writer and the advisories it holds."""

from infra.trivydb.fixture import DEFAULT_ADVISORIES, FixtureError, write_fixture_db

__all__ = ["DEFAULT_ADVISORIES", "FixtureError", "write_fixture_db"]
