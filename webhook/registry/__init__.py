"""OCI distribution client: auth, manifests, blobs and referrers; per-host limits,
breakers and byte budgets for every outbound call, sockets bound to the review's
deadline; no Kubernetes here.

The modules are ``client`` (RegistryClient, Manifest; RegistrySettings and
NotFound are re-exported from ``call``), ``call`` (one authenticated call:
retries, redirects, a bounded body), ``network`` (Network, NetworkLimits and
the breaker's errors), ``transport`` and ``guard`` (one HTTP call, its sockets
shut at the deadline), ``auth`` (tokens) and ``resolver`` (cached tag
resolution). Nothing is imported here, so that importing one module does not
load the others.
"""
