"""Signed policy sets: a manifest of a policy directory, signed with a key or keylessly.

``manifest`` is pure (file contents in, canonical bytes out), ``tree`` reads
a directory into the contents a manifest covers, refusing paths that leave
it, and ``envelope`` writes a signature over a manifest inside the directory
and checks it against the authorities of ``policies.signature``: keys here
(``TrustedKey``), keyless identities in ``signatures/policyset.py``, both
behind the ``SetAuthority`` protocol. ``gate`` is what the policy store asks;
``verifier`` is the ``gate.SetVerifier`` of ``source: files``.
"""
