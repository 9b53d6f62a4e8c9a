"""What a Notation authority trusts, as a policy declares it: stores, identities, levels.

Below ``policy`` in the layers, as ``webhook.trust.keys`` is for cosign keys,
so that a policy file's trust stores are read, and its identities and level
checked, when the policies load; verification itself is
``webhook.signatures.notation``.
"""
