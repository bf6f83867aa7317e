"""audio-worker: renders audio jobs from a PostgreSQL queue."""

__version__ = "0.1.0"
