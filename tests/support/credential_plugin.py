#!/usr/bin/env python3
"""A kubelet credential provider plug-in for tests, speaking credentialprovider.kubelet.k8s.io/v1.

It reads a ``CredentialProviderRequest`` on stdin and answers a
``CredentialProviderResponse`` on stdout with one ``auth`` entry: the
registry named by ``--registry`` (default: the image's own), with the
username and password of ``PLUGIN_USERNAME`` and ``PLUGIN_PASSWORD`` (the
provider's ``env`` sets them). ``--cache-key-type`` and ``--cache-duration``
go into the answer (no ``--cache-duration``: the field is left out).
``--log FILE`` appends each request it got, one JSON line per run.

``--mode`` makes it hostile: ``hang`` (starts a child that keeps stdout open,
writes its pid to ``--log``'s file + ``.child``, and sleeps), ``flood``
(writes stdout without end), ``wrong-api`` (answers v1alpha1), ``wrong-kind``,
``not-json``, ``unknown-field``, ``fail`` (a message on stderr with the
password in it, and exit 1), ``slow`` (answers after ``--delay`` seconds).

Only the standard library: the kubelet's bin directory has no virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

API_VERSION = "credentialprovider.kubelet.k8s.io/v1"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--registry")
    parser.add_argument("--cache-key-type", default="Registry")
    parser.add_argument("--cache-duration")
    parser.add_argument("--log")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    request = json.loads(sys.stdin.read())
    if args.log:
        with open(args.log, "a", encoding="utf-8") as log:
            log.write(json.dumps(request) + "\n")
    if request.get("apiVersion") != API_VERSION or request.get("kind") != (
        "CredentialProviderRequest"
    ):
        print(f"unexpected request {request.get('apiVersion')}", file=sys.stderr)
        return 2
    mode = args.mode
    if mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        if args.log:
            with open(args.log + ".child", "w", encoding="utf-8") as note:
                note.write(str(child.pid))
        time.sleep(600)
        return 0
    if mode == "flood":
        block = b"x" * 65536
        while True:
            sys.stdout.buffer.write(block)
    if mode == "not-json":
        sys.stdout.write("Error: could not reach the metadata server\n")
        return 0
    if mode == "fail":
        password = os.environ.get("PLUGIN_PASSWORD", "")
        print("I0101 provider.go:40] asking for credentials", file=sys.stderr)
        print(f"Error: failed to get credentials: token {password} was refused", file=sys.stderr)
        return 1
    if mode == "slow":
        time.sleep(args.delay)
    registry = args.registry or request["image"].split("/", 1)[0]
    response: dict[str, object] = {
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1alpha1"
        if mode == "wrong-api"
        else API_VERSION,
        "kind": "CredentialProviderRequest"
        if mode == "wrong-kind"
        else "CredentialProviderResponse",
        "cacheKeyType": args.cache_key_type,
        "auth": {
            registry: {
                "username": os.environ.get("PLUGIN_USERNAME", ""),
                "password": os.environ.get("PLUGIN_PASSWORD", ""),
            }
        },
    }
    if args.cache_duration is not None:
        response["cacheDuration"] = args.cache_duration
    if mode == "unknown-field":
        response["expiresAt"] = "2030-01-01T00:00:00Z"
    json.dump(response, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
