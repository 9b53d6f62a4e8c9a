"""Signature verification: cosign key signatures and DSSE attestations, without I/O.

The public names are re-exported here; the modules are ``keys`` (public keys
and raw verification) and ``cosign`` (cosign's formats).
"""

from webhook.signatures.cosign import KeyVerification as KeyVerification
from webhook.signatures.cosign import SignatureInvalid as SignatureInvalid
from webhook.signatures.cosign import SimpleSigning as SimpleSigning
from webhook.signatures.cosign import signature_tag as signature_tag
from webhook.signatures.cosign import verify_with_key as verify_with_key
from webhook.signatures.keys import PublicKey as PublicKey
from webhook.signatures.keys import load_public_key as load_public_key
