"""OCI distribution client: auth, manifests, blobs and referrers; per-host limits,
breakers, deadlines and byte budgets for every outbound call; no Kubernetes here."""

from webhook.registry.client import Manifest as Manifest
from webhook.registry.client import NotFound as NotFound
from webhook.registry.client import RegistryClient as RegistryClient
from webhook.registry.client import RegistrySettings as RegistrySettings
from webhook.registry.deadline import Deadline as Deadline
from webhook.registry.network import Network as Network
from webhook.registry.network import NetworkLimits as NetworkLimits

__all__ = [
    "Deadline",
    "Manifest",
    "Network",
    "NetworkLimits",
    "NotFound",
    "RegistryClient",
    "RegistrySettings",
]
