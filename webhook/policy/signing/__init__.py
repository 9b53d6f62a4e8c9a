"""Signed policy sets: a manifest of a policy directory, signed and checked with keys.

``manifest`` is pure (file contents in, canonical bytes out), ``tree`` reads
a directory into the contents a manifest covers, refusing paths that leave
it, and ``envelope`` signs a manifest with a private key, writes the result
inside the directory and checks it against trusted public keys. The server
does not read signatures yet: ``trustgate policy sign``/``verify``/``lint``
do.
"""
