"""Local stand-ins that ``make demo`` and the tests share: a real OCI registry, cosign signatures.

The webhook never imports this package; it exists so that the demo and the
tests run one copy of the code that starts a registry, pushes images and
signs them.
"""
