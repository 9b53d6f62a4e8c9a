"""OCI distribution client: auth, manifests, blobs and referrers; no Kubernetes here."""

from webhook.registry.client import Deadline as Deadline
from webhook.registry.client import Manifest as Manifest
from webhook.registry.client import NotFound as NotFound
from webhook.registry.client import RegistryClient as RegistryClient
from webhook.registry.client import RegistrySettings as RegistrySettings

__all__ = ["Deadline", "Manifest", "NotFound", "RegistryClient", "RegistrySettings"]
