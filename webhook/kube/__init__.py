"""Kubernetes API access (lightkube) for ``audit --cluster``; the one place that talks
to the API server: credentials, the client, listing workloads, writing reports.

The webhook itself never calls the API. Nothing is imported here, so that
``import webhook.kube`` does not load lightkube.
"""
