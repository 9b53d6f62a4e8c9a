"""Caches: local TTL caches, the shared Redis tier (sealed entries) and its client, and
single-flight coalescing of concurrent work."""
