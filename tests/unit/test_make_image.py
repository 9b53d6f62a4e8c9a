"""``make image``: the first of buildah, podman and docker on PATH builds the Containerfile.

The builders are stand-ins on a PATH of their own, recording how make calls them;
docker's own command line, where installed, talks to a stand-in daemon
(:mod:`tests.support.dockerd`), so the build request it sends is checked as dockerd
would receive it, without a daemon.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.dockerd import start_dockerd

REPO = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make") or "make"
BASE = "BASE_IMAGE=registry.access.redhat.com/ubi9/python-311:latest"
#: What the Makefile itself runs besides the builder.
_HELPERS = ("sed", "cksum", "cut")


def builders_path(directory: Path, *tools: str, daemon: bool = True) -> str:
    """A PATH holding ``tools`` as stand-ins that log their arguments, and make's helpers."""
    directory.mkdir()
    for helper in _HELPERS:
        (directory / helper).symlink_to(shutil.which(helper) or helper)
    for tool in tools:
        fails = "" if daemon else 'test "$1" = info && exit 1\n'
        script = directory / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {directory}/calls\n{fails}exit 0\n')
        script.chmod(0o755)
    return str(directory)


def make_image(path: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAKE, "-s", "image", "IMAGE=localhost/trustgate", "IMAGE_TAG=dev", *args],
        cwd=REPO, env={"PATH": path, "HOME": os.environ.get("HOME", "/"), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("tools", "builder"),
    [
        (("docker",), "docker"),
        (("podman", "docker"), "podman"),
        (("buildah", "podman", "docker"), "buildah"),
        (("buildah",), "buildah"),
    ],
)
def test_the_first_builder_on_path_builds(
    tmp_path: Path, tools: tuple[str, ...], builder: str
) -> None:
    path = builders_path(tmp_path / "bin", *tools)
    done = make_image(path)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "bin" / "calls").read_text().splitlines()
    layers = [] if builder == "docker" else ["--layers"]
    build = " ".join([builder, "build", *layers, "--build-arg", BASE, "-f", "Containerfile"])
    assert calls[-1] == f"{build} -t localhost/trustgate:dev ."
    # docker needs its daemon: asked first; the others need none.
    assert calls[:-1] == ([f"{builder} info"] if builder == "docker" else [])
    assert f"{builder} push localhost/trustgate:dev" in done.stdout
    kind = (
        "kind load docker-image localhost/trustgate:dev"
        if builder == "docker"
        else "docker-archive:/tmp/trustgate.tar && kind load image-archive /tmp/trustgate.tar"
    )
    assert kind in done.stdout


def test_builder_chooses(tmp_path: Path) -> None:
    path = builders_path(tmp_path / "bin", "buildah", "docker")
    assert make_image(path, "BUILDER=docker").returncode == 0
    assert (tmp_path / "bin" / "calls").read_text().splitlines()[-1].startswith("docker build ")


def test_without_a_builder_it_says_what_to_install(tmp_path: Path) -> None:
    done = make_image(builders_path(tmp_path / "bin"))
    assert done.returncode == 2
    assert "make image needs docker, podman or buildah, and none is on PATH" in done.stderr
    assert "apt-get install podman" in done.stderr


def test_docker_without_its_daemon_is_refused_before_building(tmp_path: Path) -> None:
    """Here docker is installed and no daemon runs: the real command line says so."""
    real = shutil.which("docker")
    if real is not None:
        path = builders_path(tmp_path / "bin")
        (tmp_path / "bin" / "docker").symlink_to(real)
        done = make_image(path, DOCKER_HOST=f"unix://{tmp_path}/no-daemon.sock")
    else:
        done = make_image(builders_path(tmp_path / "bin", "docker", daemon=False))
        assert "build" not in (tmp_path / "bin" / "calls").read_text()
    assert done.returncode == 2, done.stdout
    assert "docker is installed but its daemon does not answer" in done.stderr
    assert "BUILDER=podman" in done.stderr


def test_docker_sends_the_build_the_containerfile_needs(tmp_path: Path) -> None:
    daemon = start_dockerd(tmp_path)
    try:
        env = {**os.environ, "DOCKER_HOST": daemon.host}
        done = subprocess.run(
            [MAKE, "image", "BUILDER=docker", "IMAGE=localhost/trustgate", "IMAGE_TAG=dev"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        daemon.stop()
    assert done.returncode == 0, done.stderr
    (build,) = daemon.builds
    assert build.tags == ["localhost/trustgate:dev"]
    assert build.query["dockerfile"] == ["Containerfile"]
    assert build.build_args == {"BASE_IMAGE": BASE.split("=", 1)[1]}
    names = set(build.names)
    # What the Containerfile copies is in the context; .dockerignore leaves out the rest.
    assert {"Containerfile", "pyproject.toml", "README.md", "webhook/__init__.py"} <= names
    assert "policies/production.yaml" in names
    top = {name.split("/")[0] for name in names}
    assert not top & {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    assert not any("__pycache__" in name for name in names)
