"""The soak reuses the end-to-end fixtures: a moto S3 server and pipeline worker processes."""

from tests.e2e.conftest import fleet, s3  # noqa: F401 - pytest fixtures
