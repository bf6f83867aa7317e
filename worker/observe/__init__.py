"""Observability: Prometheus metrics, the /healthz + /metrics endpoint and the completion webhook.

``observer.Observer`` is the claim loop's one interface to all of it; ``metrics`` has the hooks that
providers and storage call (no-ops unless metrics are on). Kept import-light: providers import it.
"""
