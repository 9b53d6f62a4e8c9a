"""The preflight hook: `trustgate policy lint` on what the pods will load, before anything else.

Rendered by a real Helm; then the Job's own command runs as a real ``trustgate`` process
on the files its volumes would hold, written from the ConfigMaps the same render made.
Only the mounting is done here (and, for Git, the checkout git-sync would leave).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.chart.test_chart import (
    CASES,
    NAMESPACE,
    RELEASE,
    REPO,
    ca_pem,  # noqa: F401 (a fixture)
    mounts_cover,
    one,
    render,
    values_for,
)
from webhook.cli.main import build_parser

JOB = f"{RELEASE}-preflight"
HOOK = "helm.sh/hook"
WEIGHT = "helm.sh/hook-weight"
#: Helm's default --timeout: the Job must give up (and say why) before Helm stops waiting.
HELM_TIMEOUT_SECONDS = 300

ENFORCED_TYPO = """\
apiVersion: trustgate.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: production
spec:
  mode: enforced
  match:
    namespaces: [prod]
  registries: [quay.io/acme/**]
"""
GOOD_POLICY = ENFORCED_TYPO.replace("mode: enforced", "mode: enforce")


def annotations(obj: dict) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("annotations") or {}
    return found


def is_hook(obj: dict) -> bool:
    return HOOK in annotations(obj)


def events(obj: dict) -> set[str]:
    return {e.strip() for e in annotations(obj)[HOOK].split(",")}


def pod_spec(job: dict) -> dict:
    spec: dict = job["spec"]["template"]["spec"]
    return spec


def lint_container(job: dict) -> dict:
    (container,) = pod_spec(job)["containers"]
    return container


def server_container(objects: list[dict]) -> dict:
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "trustgate")


def mount(
    objects: list[dict], root: Path, cluster: dict[str, dict[str, str]] | None = None
) -> list[str]:
    """Write what the Job's volumes hold under ``root``; the Job's args, pointed there.

    A ConfigMap volume is filled from a hook ConfigMap of the same render, which must be
    created before the Job on the same events; or from ``cluster`` (ConfigMaps that exist
    before the install, such as policies.existingConfigMap). A release ConfigMap would not
    exist yet at pre-install, so mounting one fails here.
    """
    job = one(objects, "Job", JOB)
    container = lint_container(job)
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    for volume_mount in container["volumeMounts"]:
        volume = volumes[volume_mount["name"]]
        target = root / volume_mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        if "configMap" not in volume:
            continue
        name = volume["configMap"]["name"]
        if name in config_maps:
            config_map = config_maps[name]
            assert is_hook(config_map), f"{name} is not created before a pre-install hook"
            assert events(config_map) == events(job)
            assert int(annotations(config_map)[WEIGHT]) < int(annotations(job)[WEIGHT])
            data = config_map["data"]
        else:
            data = (cluster or {})[name]
        for key, text in data.items():
            (target / key).write_text(text)
    mount_paths = [m["mountPath"] for m in container["volumeMounts"]]
    args = []
    for arg in container["args"]:
        flag, equals, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
        if any(value == p or value.startswith(p.rstrip("/") + "/") for p in mount_paths):
            value = str(root) + value
        args.append(f"{flag}{equals}{value}")
    return args


def run_hook(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The image's entrypoint (`trustgate`) with the Job's args, as a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTGATE_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- what the check refuses ------------------------------------------------------------


def test_a_policy_the_server_would_refuse_stops_the_install(tmp_path: Path) -> None:
    """`mode: enforced` renders (policy files are strings to the values schema); the hook
    refuses it with the reason, before any webhook configuration exists."""
    values = {"policies": {"files": {"prod.yaml": ENFORCED_TYPO}}}
    objects = render(values)
    result = run_hook(mount(objects, tmp_path), tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "prod.yaml, document 1, field spec.mode: must be one of enforce, audit" in result.stderr
    assert "(got 'enforced')" in result.stderr


def test_a_configuration_the_schema_cannot_judge_stops_the_install(tmp_path: Path) -> None:
    """A cost limit above the deadline passes the values schema (each bound is fine alone);
    the server refuses it at start-up, and so does the hook."""
    values = {"config": {"conditions": {"costSeconds": 9}}}
    objects = render(values)
    result = run_hook(mount(objects, tmp_path), tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "field conditions.costSeconds: 9 s must be below deadlineSeconds (8 s)" in result.stderr


def test_the_default_values_pass(tmp_path: Path) -> None:
    objects = render()
    result = run_hook(mount(objects, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "audit-all" not in result.stderr


def test_a_good_policy_set_passes(tmp_path: Path) -> None:
    objects = render({"policies": {"files": {"prod.yaml": GOOD_POLICY}}})
    result = run_hook(mount(objects, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr


def test_an_existing_config_map_is_checked_as_it_is_in_the_cluster(tmp_path: Path) -> None:
    objects = render({"policies": {"existingConfigMap": "platform-policies"}})
    assert f"{RELEASE}-preflight-policies" not in {o["metadata"]["name"] for o in objects}
    cluster = {"platform-policies": {"prod.yaml": ENFORCED_TYPO}}
    result = run_hook(mount(objects, tmp_path, cluster), tmp_path)
    assert result.returncode == 2
    assert "field spec.mode: must be one of enforce, audit" in result.stderr


def test_policies_from_git_are_cloned_and_checked_like_the_server_does(tmp_path: Path) -> None:
    objects = render(CASES["git-sync"])
    job = one(objects, "Job", JOB)
    server_spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    (clone,) = pod_spec(job)["initContainers"]
    assert clone == server_spec["initContainers"][0]  # same repo, ref, credentials, one-time
    assert f"{RELEASE}-preflight-policies" not in {o["metadata"]["name"] for o in objects}
    args = mount(objects, tmp_path)
    # What git-sync --root=/git --link=current leaves: the checkout under /git/current.
    checkout = tmp_path / "git" / "current" / "policies"
    checkout.mkdir(parents=True)
    (checkout / "prod.yaml").write_text(ENFORCED_TYPO)
    result = run_hook(args, tmp_path)
    assert result.returncode == 2
    assert "field spec.mode: must be one of enforce, audit" in result.stderr
    (checkout / "prod.yaml").write_text(GOOD_POLICY)
    assert run_hook(args, tmp_path).returncode == 0


# --- the same files, the same command, the same image ------------------------------------


SAME_FILES: dict[str, dict[str, Any]] = {
    "default": {},
    "set-file": {"policies": {"files": {"prod.yaml": GOOD_POLICY, "more": {"a": [1, "b"]}}}},
    "shared-cache-and-pyxis": {
        "cache": {"shared": {"url": "redis://redis.cache.svc:6379/0"}},
        "freshness": {"pyxis": {"apiKey": "k"}},
        "webhook": {"timeoutSeconds": 20},
        "config": {"defaults": {"noMatch": "warn"}},
    },
}


@pytest.mark.parametrize("case", sorted(SAME_FILES))
def test_the_check_reads_what_the_pods_will_load(case: str) -> None:
    objects = render(SAME_FILES[case])
    for name in ("config", "policies"):
        released = one(objects, "ConfigMap", f"{RELEASE}-{name}")
        copy = one(objects, "ConfigMap", f"{RELEASE}-preflight-{name}")
        assert copy["data"] == released["data"]
        assert not is_hook(released)
    server = build_parser({}).parse_args(server_container(objects)["args"])
    job = one(objects, "Job", JOB)
    lint = build_parser({}).parse_args(lint_container(job)["args"])
    assert (lint.command, lint.policy_command) == ("policy", "lint")
    assert (lint.config, lint.policies) == (server.config, server.policies)
    assert lint.directory is None  # --policies, as the server is given it
    for path in (lint.config, lint.policies):
        assert mounts_cover(lint_container(job), str(path))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_check_runs_as_the_server_runs(case: str, ca_pem: str) -> None:  # noqa: F811
    values = values_for(case, ca_pem)
    values["imagePullSecrets"] = ["pull"]
    values["resources"] = {"requests": {"cpu": "250m", "memory": "200Mi"}}
    values["nodeSelector"] = {"pool": "system"}
    values["tolerations"] = [{"key": "system", "operator": "Exists"}]
    objects = render(values)
    deployment = one(objects, "Deployment")
    server_spec = deployment["spec"]["template"]["spec"]
    job = one(objects, "Job", JOB)
    spec, lint, server = pod_spec(job), lint_container(job), server_container(objects)
    for key in ("image", "imagePullPolicy", "securityContext", "resources"):
        assert lint[key] == server[key], key
    for key in ("imagePullSecrets", "securityContext", "nodeSelector", "tolerations"):
        assert spec.get(key) == server_spec.get(key), key
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert mounts_cover(lint, "/tmp")
    # No selector of the release picks the check's pod (it serves nothing).
    labels = job["spec"]["template"]["metadata"]["labels"]
    selectors = [deployment["spec"]["selector"]["matchLabels"]]
    selectors += [o["spec"]["selector"] for o in objects if o["kind"] == "Service"]
    selectors += [
        o["spec"]["selector"]["matchLabels"] for o in objects if o["kind"] == "PodDisruptionBudget"
    ]
    selectors += [
        o["spec"]["podSelector"]["matchLabels"] for o in objects if o["kind"] == "NetworkPolicy"
    ]
    for selector in selectors:
        assert not selector.items() <= labels.items(), selector


def test_hook_order_and_reruns() -> None:
    objects = render()
    job = one(objects, "Job", JOB)
    hooks = [o for o in objects if is_hook(o)]
    assert {o["metadata"]["name"] for o in hooks} == {
        JOB,
        f"{RELEASE}-preflight-config",
        f"{RELEASE}-preflight-policies",
    }
    for hook in hooks:
        assert events(hook) == {"pre-install", "pre-upgrade"}
        # A rerun replaces a failed Job left for its logs; a passed check leaves nothing.
        policy = {p.strip() for p in annotations(hook)["helm.sh/hook-delete-policy"].split(",")}
        assert policy == {"before-hook-creation", "hook-succeeded"}
        assert hook["metadata"]["namespace"] == NAMESPACE
    assert annotations(job)["helm.sh/hook-output-log-policy"] == "hook-failed"
    assert job["spec"]["backoffLimit"] == 0
    assert 0 < job["spec"]["activeDeadlineSeconds"] < HELM_TIMEOUT_SECONDS
    # Helm creates release objects only once every pre-install hook has passed: no webhook
    # configuration is a hook, so none exists while the check runs or after it fails.
    for obj in objects:
        if obj["kind"].endswith("WebhookConfiguration"):
            assert not is_hook(obj)


def test_the_check_can_be_turned_off() -> None:
    objects = render({"preflight": {"enabled": False}})
    assert not [o for o in objects if is_hook(o)]
    assert "Job" not in {o["kind"] for o in objects}


def test_an_existing_service_account_runs_it() -> None:
    """The chart's own account is a release object: it does not exist at pre-install."""
    own = pod_spec(one(render(), "Job", JOB))
    assert "serviceAccountName" not in own
    existing = render({"serviceAccount": {"create": False, "name": "platform-pull"}})
    assert pod_spec(one(existing, "Job", JOB))["serviceAccountName"] == "platform-pull"
