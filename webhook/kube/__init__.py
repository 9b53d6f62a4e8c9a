"""Kubernetes API access (lightkube): listing a cluster's workloads for ``audit --cluster``
and writing reports; the one place that talks to the API server."""
