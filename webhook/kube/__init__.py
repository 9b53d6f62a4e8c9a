"""Kubernetes API access (lightkube); the one place that talks to the API server:
credentials, the client, listing workloads and writing reports (``audit --cluster``),
registering the webhook's own webhooks (``serve --register``), and reading pull
secrets (``secretwatch`` for the server, ``secretreads`` for one-shot commands).

A review in the server never calls the API: it reads pull secrets from a watched cache.
Nothing is imported here, so that ``import webhook.kube`` does not load lightkube.
"""
