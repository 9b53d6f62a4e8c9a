"""Registry credentials from Kubernetes pull secrets, matched to images as the kubelet does.

``dockerconfig`` reads the content of ``kubernetes.io/dockerconfigjson`` and
``kubernetes.io/dockercfg`` Secrets; ``keyring`` picks, for one image, the
credentials to try and their order. Both are pure: no file, no network, no
Kubernetes client, so the rules can be tested row by row and whoever fetches
the Secrets (a watched cache, a one-shot ``review``) shares them. Imports only
``webhook.core``.
"""
