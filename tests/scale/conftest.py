"""The scale tests drive real pipeline workers: reuse the end-to-end fixtures (S3 server, fleet)."""

from tests.e2e.conftest import fleet, s3  # noqa: F401
