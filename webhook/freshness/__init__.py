"""Freshness grades (Red Hat's Container Health Index) and where they come from.

``grades`` holds the rules as pure functions of (fixes, now); ``pyxis``,
``reports`` and ``static`` read grades or fixes from Red Hat's catalog, signed
vulnerability reports and a grades file; ``sources`` puts them behind one
interface. Nothing here knows about Kubernetes or HTTP servers.
"""
