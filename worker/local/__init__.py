"""Local stand-ins the demo and the tests start: a throwaway PostgreSQL, a local S3 server."""
