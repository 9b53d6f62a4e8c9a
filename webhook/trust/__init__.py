"""Trust material policies name and signatures are checked against: public keys and
Sigstore trusted roots. Below ``policy/`` and ``signatures/``, which both load it."""
