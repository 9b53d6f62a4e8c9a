"""Kubernetes API access (lightkube); the one place that talks to the API server:
credentials, the client, listing workloads and writing reports (``audit --cluster``),
and registering the webhook's own webhooks (``serve --register``).

Reviews never call the API. Nothing is imported here, so that ``import webhook.kube``
does not load lightkube.
"""
