"""Notary Project (Notation) signatures: envelopes, trust, revocation and discovery.

Notation signs an OCI artifact with an X.509 certificate chain under a trust
store, in a JWS or COSE envelope attached as an OCI referrer. Its modules:

- ``model``: what a parsed envelope says (shared by all below);
- ``envelope``, ``jws``, ``cose``: parse an envelope and check its integrity,
  with ``attributes`` (the rules both formats share), ``algorithms``,
  ``payload`` and ``cbor`` (strict CBOR for COSE);
- ``chains``, ``timestamps``, ``trust``: whether the signer is trusted, per the
  Notary Project trust-policy specification, against the trust stores, identities
  and level a policy declares (``webhook.trust.notation``, read when policies load);
- ``revocation``: OCSP and CRL, bounded, cached, with ``ocsp`` and ``crl`` (which
  answers to believe), ``fetcher`` (one bounded HTTP GET) and ``certstatus``
  (what is known of a certificate's revocation);
- ``discovery``: the signatures of a digest, among its referrers;
- ``verifier``: all of the above for one digest and one trust statement: the
  verified signers, and why each other signature was refused;
- ``material``: what the signature check asks, authority by authority, with
  the signatures read and parsed once per review.
"""
