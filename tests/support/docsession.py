"""A document's commands run in order, each as far as this machine allows.

What runs here runs as written: ``.venv/bin/trustgate`` (a stand-in Kubernetes API
answers ``--cluster``), ``make`` (``make image`` with docker against a stand-in
daemon, other targets with ``-n``), ``curl`` against the server ``make run``
starts. What needs a cluster, a container runtime or a registry runs its local
counterpart and is checked against what came before in the same document:

- ``helm install|upgrade``: rendered with the same values by a real Helm
  (:mod:`tests.support.helmcli`); the image must be the one built before, and
  never the chart's default, which nobody publishes;
- ``kind load``, ``podman|buildah|docker push``: the image built before;
- ``kubectl create deployment``: the object kubectl itself makes
  (``--dry-run=client``), judged by ``trustgate audit`` with the policies and
  configuration the chart rendered, against the comment's ``warned``/``denied``;
  it then runs in the stand-in API for a later ``audit --cluster``;
- ``kubectl rollout status|delete|patch``: the object exists in the rendered
  chart, and a JSON patch applies to it (to a webhook configuration as the pods
  register it from the chart's registration.json).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonpatch
import requests
import yaml

from tests.support.docblocks import REPO, Command
from tests.support.dockerd import Dockerd
from tests.support.helmcli import Release, helm_release
from tests.support.kubeapi import ApiServer, kubeconfig, stored

#: The chart's default image, which nobody has pushed.
DEFAULT_IMAGE = "quay.io/trustgate/trustgate"
#: What each kubectl kind argument names in the rendered chart.
_KINDS = {
    "deployment": "Deployment",
    "validatingwebhookconfiguration": "ValidatingWebhookConfiguration",
    "mutatingwebhookconfiguration": "MutatingWebhookConfiguration",
}
#: Programs that need a marked block (``sh cluster`` or ``sh image``).
_ELSEWHERE = frozenset({"kind", "kubectl", "helm", "podman", "buildah", "docker"})


class DocSession:
    """The state one document builds up: the image built, the release, the workloads."""

    def __init__(
        self,
        work: Path,
        api: ApiServer,
        dockerd: Dockerd | None,
        expected: Mapping[str, tuple[int, str]],
    ) -> None:
        self.work, self.api, self.dockerd, self.expected = work, api, dockerd, expected
        for name in ("examples", "docs", "policies", "charts"):
            (work / name).symlink_to(REPO / name)
        shim = work / ".venv" / "bin" / "trustgate"
        shim.parent.mkdir(parents=True)
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m webhook.cli.main "$@"\n')
        shim.chmod(0o755)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRUSTGATE_")},
            "PATH": f"{shim.parent}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPO),
            "KUBECONFIG": str(kubeconfig(work / "kubeconfig", api, token=api.token)),
        }
        self.built: str | None = None
        self.release: Release | None = None
        self.clusters: set[str] = set()
        self.outputs: dict[str, subprocess.CompletedProcess[str]] = {}
        self.server: subprocess.Popen[bytes] | None = None
        self.ran: list[str] = []
        # A workload that runs in the cluster before the document starts.
        api.objects = {k: [] for k in ("replicasets", "statefulsets", "daemonsets", "jobs")}
        api.objects |= {k: [] for k in ("replicationcontrollers", "cronjobs", "pods")}
        api.objects["deployments"] = [stored("Deployment", "web", "prod-web", "nginx:1.27")]
        self._make_certs()

    def close(self) -> None:
        """Stop the server ``curl`` needed, if one started."""
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=20)

    def run(self, command: Command) -> None:
        """Run ``command`` or its local counterpart, asserting what the document says."""
        program = command.argv[0]
        where = f"{command.block.where}: {command.text}"
        if program in _ELSEWHERE or command.text.startswith("make image"):
            assert command.block.marks, f"{where}: mark the block `sh cluster` or `sh image`"
        handler = getattr(self, f"_{program.rsplit('/', 1)[-1]}", None)
        assert handler is not None, f"{where}: this test has no local counterpart for {program}"
        handler(command)
        self.ran.append(command.text)

    # --- what runs here ---------------------------------------------------------------

    def _trustgate(self, command: Command) -> None:
        words = command.text.split(" > ")[0].split(" ", 1)[1]
        matches = [key for key in self.expected if words.startswith(key)]
        assert matches, f"{command.block.where}: no expectation for {command.text}"
        code, text = self.expected[max(matches, key=len)]
        done = self.shell(command.text)
        assert done.returncode == code, (command.text, done.stdout, done.stderr)
        assert text in done.stdout, (command.text, done.stdout)
        self.outputs[command.text] = done

    def shell(
        self, text: str, input: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``text`` run by ``sh`` in the work directory, as a reader would run it."""
        return subprocess.run(
            ["sh", "-c", text], cwd=self.work, env={**self.env, **env}, input=input,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def _make(self, command: Command) -> None:
        argv = command.argv
        if "image" not in argv:
            done = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True)
            assert done.returncode == 0, (command.text, done.stderr)
            return
        if not any(word.startswith("BUILDER=") for word in argv):
            argv = [*argv, "BUILDER=docker"]  # never a real build on a machine with podman
        (build,) = [line for line in _dry_make(*argv[1:]) if re.match(r"\S+ build ", line)]
        self.built = shlex.split(build)[shlex.split(build).index("-t") + 1]
        if self.dockerd is not None:
            env = {**os.environ, "DOCKER_HOST": self.dockerd.host}
            done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
            assert done.returncode == 0, (command.text, done.stdout, done.stderr)
            assert self.dockerd.builds[-1].tags == [self.built]

    def _curl(self, command: Command) -> None:
        port = self._serve()
        done = self.shell(command.text.replace("127.0.0.1:8443", f"127.0.0.1:{port}"))
        assert done.returncode == 0, (command.text, done.stderr)
        self.outputs[command.text] = done

    def _make_certs(self) -> None:
        """certs/ as ``make run`` makes it: the Makefile's own command line."""
        (line,) = [x for x in _dry_make("-B", "certs/tls.crt") if "certs generate" in x]
        done = self.shell(line)
        assert done.returncode == 0, (line, done.stderr)

    def _serve(self) -> int:
        """The server ``make run`` starts, on a free port; its port."""
        if self.server is None:
            from tests.integration.conftest import free_port

            self.port = free_port()
            (line,) = [x for x in _dry_make("run", f"PORT={self.port}") if "trustgate serve" in x]
            log = (self.work / "serve.log").open("wb")
            self.server = subprocess.Popen(
                ["sh", "-c", f"exec {line}"], cwd=self.work, env=self.env, stdout=log, stderr=log
            )
            deadline = time.monotonic() + 30
            while True:
                assert self.server.poll() is None, (self.work / "serve.log").read_text()
                try:
                    url = f"https://127.0.0.1:{self.port}/readyz"
                    if requests.get(url, verify=self.work / "certs" / "ca.crt", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, (self.work / "serve.log").read_text()
                time.sleep(0.2)
        return self.port

    def _sleep(self, command: Command) -> None:
        """Time for kubelet and the server; nothing to wait for here."""

    # --- local counterparts ------------------------------------------------------------

    def _kind(self, command: Command) -> None:
        argv = command.argv
        name = argv[argv.index("--name") + 1] if "--name" in argv else "kind"
        if argv[1:3] == ["create", "cluster"]:
            self.clusters.add(name)
        elif argv[1:3] == ["load", "docker-image"]:
            assert argv[3] == self.built, f"{command.text}: not the image built ({self.built})"
            assert not self.clusters or name in self.clusters, f"{command.text}: no such cluster"
        else:
            assert argv[1:3] == ["delete", "cluster"], command.text

    def _container(self, command: Command) -> None:
        argv = [w for w in command.argv[1:] if not w.startswith("-")]
        verb = argv[0]
        if verb in ("push", "from"):
            images = [w for w in argv[1:] if ":" in w and not w.endswith(".digest")]
            assert images[0] == self.built, f"{command.text}: not the image built ({self.built})"
        elif verb == "run":
            inside = command.text.split(" -- ", 1)[1]
            assert inside.startswith("trustgate "), command.text
            # The image's environment: its policies in $TRUSTGATE_POLICIES.
            done = self.shell(f".venv/bin/{inside}", TRUSTGATE_POLICIES="policies")
            assert done.returncode == 0, (command.text, done.stdout, done.stderr)
        else:
            assert verb == "rm", command.text

    _podman = _buildah = _docker = _container

    def _helm(self, command: Command) -> None:
        release = helm_release(command.argv, REPO, self.release)
        self.release = release
        if release.partial:
            return  # an upgrade of a release this document did not install
        (deployment,) = [
            o
            for o in release.objects
            if o["kind"] == "Deployment" and o["metadata"]["name"] == release.name
        ]
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert not image.startswith(DEFAULT_IMAGE), (
            f"{command.block.where}: installs the chart's default image {image}, which nobody "
            "has pushed: set image.repository (and image.tag) to the image built"
        )
        if self.built is not None:
            assert image == self.built, f"{command.text}: runs {image}, not {self.built}"
        self._rendered_policies()  # they load

    def _kubectl(self, command: Command) -> None:
        argv, namespace = _without_namespace(command.argv[1:])
        argv = [w for w in argv if not w.startswith("--timeout")]
        if self.release is None:
            # The documented install: release trustgate in trustgate-system.
            default = "helm install trustgate charts/trustgate --namespace trustgate-system"
            self.release = helm_release(default.split(), REPO, None)
        release = self.release
        if argv[:2] == ["rollout", "status"]:
            kind, name = argv[2].split("/")
            found = release.find(_KINDS[kind], name)
            assert found and found["metadata"]["namespace"] == namespace, command.text
        elif argv[:2] == ["create", "namespace"]:
            self._dry_run(argv)
        elif argv[:2] == ["create", "deployment"]:
            self._create_deployment(command, argv, namespace)
        elif argv[0] in ("delete", "patch"):
            found = release.find(_KINDS[argv[1]], argv[2])
            assert found is not None, f"{command.text}: the chart renders no {argv[1]} {argv[2]}"
            if argv[0] == "patch":
                patch = json.loads(argv[argv.index("-p") + 1])
                live = _as_registered(release, found)
                jsonpatch.apply_patch(live, patch)  # raises when a path is not there
        else:
            raise AssertionError(f"{command.text}: no local counterpart for this kubectl command")

    def _dry_run(self, argv: list[str], namespace: str | None = None) -> dict[str, Any]:
        """What kubectl would send for ``argv``: its own ``--dry-run=client`` object."""
        scope = ["-n", namespace] if namespace else []
        done = subprocess.run(
            ["kubectl", *scope, *argv, "--dry-run=client", "-o", "yaml"],
            capture_output=True, text=True, check=True,
            env={**os.environ, "KUBECONFIG": os.devnull},
        )  # fmt: skip
        made: dict[str, Any] = yaml.safe_load(done.stdout)
        return made

    def _create_deployment(self, command: Command, argv: list[str], namespace: str) -> None:
        made = self._dry_run(argv, namespace)
        policies, config = self._rendered_policies()
        judged = self.shell(
            f".venv/bin/trustgate audit - --policies {policies} --config {config} -o json",
            input=yaml.safe_dump(made),
        )
        rows = json.loads(judged.stdout)
        want = re.match(r"(warned|denied|allowed) by (\S+)", command.comment)
        assert want, f"{command.text}: say in a comment what happens (warned|denied|allowed by P)"
        assert {r["decision"] for r in rows} == {want[1]}, (command.text, rows)
        assert all(f'policy "{want[2]}"' in " ".join(r["reasons"]) for r in rows), rows
        name = made["metadata"]["name"]
        image = made["spec"]["template"]["spec"]["containers"][0]["image"]
        kept = [o for o in self.api.objects["deployments"] if o["metadata"]["name"] != name]
        self.api.objects["deployments"] = [*kept, stored("Deployment", name, namespace, image)]

    def _rendered_policies(self) -> tuple[Path, Path]:
        """The release's policies ConfigMap and trustgate.yaml, written as the pods mount them."""
        assert self.release is not None
        name = self.release.name
        policies = self.release.find("ConfigMap", f"{name}-policies")
        config = self.release.find("ConfigMap", f"{name}-config")
        assert policies and config, "the chart renders no policies or config ConfigMap"
        directory = self.work / "rendered-policies"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        for file, text in policies["data"].items():
            (directory / file).write_text(text)
        (config_file,) = config["data"].items()
        path = self.work / config_file[0]
        path.write_text(config_file[1])
        lint = self.shell(f".venv/bin/trustgate policy lint {directory}")
        assert lint.returncode == 0, ("the rendered policies do not load", lint.stderr)
        return directory, path


def _as_registered(release: Any, found: dict[str, Any]) -> dict[str, Any]:
    """A webhook configuration as it is once the pods registered it.

    The chart renders the configurations without webhooks; ready pods write in
    the webhooks of the chart's registration.json (docs/install.md), and that
    is what a kubectl patch of the recovery steps meets.
    """
    kind = found["kind"]
    if kind not in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        return found
    name = found["metadata"]["name"]
    registration = next(
        json.loads(obj["data"]["registration.json"])
        for obj in release.objects
        if obj["kind"] == "ConfigMap" and "registration.json" in obj.get("data", {})
    )
    (configuration,) = [
        c for c in registration["configurations"] if (c["kind"], c["name"]) == (kind, name)
    ]
    return {**found, "webhooks": json.loads(json.dumps(configuration["webhooks"]))}


def _dry_make(*args: str) -> list[str]:
    """The command lines ``make -n ARGS`` prints in the repository, continuations joined."""
    dry = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True)
    assert dry.returncode == 0, (args, dry.stderr)
    return dry.stdout.replace("\\\n", " ").splitlines()


def _without_namespace(argv: list[str]) -> tuple[list[str], str]:
    """kubectl words without ``-n NS``/``--namespace NS``, and the namespace."""
    words, namespace = [], "default"
    it = iter(argv)
    for word in it:
        if word in ("-n", "--namespace"):
            namespace = next(it)
        elif word.startswith("--namespace="):
            namespace = word.split("=", 1)[1]
        else:
            words.append(word)
    return words, namespace
