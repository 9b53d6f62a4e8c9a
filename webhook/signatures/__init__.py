"""Signature verification: cosign signatures (key-based and keyless, ``.sig`` and bundles),
DSSE attestations and their CEL conditions, and the Check that runs them.

``cosign`` reads cosign's formats, ``keyless`` and ``identity`` check certificates and
their identities, ``attestations`` and ``conditions`` check in-toto statements, and
``check`` is the signature Check. Public keys and trusted roots are in ``webhook.trust``.
"""
