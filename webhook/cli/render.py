"""Render kustomizations and Helm charts into manifests, by running their own tools.

``trustgate audit`` judges what the API server will receive. A kustomization or a
chart is not that until it is rendered: judged as raw files, a base is judged
without the image and namespace its overlay sets, and a template is not YAML at
all. So the audit runs the tool a GitOps controller would run (``kubectl
kustomize``, ``helm template``) and judges its output; where the tool is missing
it refuses, with the command to render by hand and pipe in.

The renderers are other programs reading a tree the audit did not write: each
runs as a child process with no standard input, in a session of its own, and is
killed (with its children, such as the ``git`` of a remote base) once it runs
longer than ``Limits.seconds`` or writes more than ``Limits.output_bytes``.

Which Helm: the ``helm`` on PATH first, the one the user's own pipeline runs and
the hint names; else the helm-python-sdk package (Helm's Go SDK in a wheel, no
binary), run in a child Python (``webhook.cli.helmsdk``) under the same limits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from webhook.cli.tree import Source
from webhook.core.errors import ManifestError

#: The release name of a chart rendered without one, as ``helm template CHART`` names it.
RELEASE_NAME = "release-name"
#: Each quoted line of a failing tool's error output, and how many of them.
_QUOTE_LINE, _QUOTE_LINES = 300, 4
_CHUNK = 65536
#: klog's header before kubectl's error lines (``E1206 04:50:06.515057   16623 run.go:72] ``).
_KLOG = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [^\]]+\] ")


class RenderError(ManifestError):
    """A kustomization or chart could not be rendered: a tool is missing, failed or was cut off."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How long a renderer may run and how much it may write (standard output and error)."""

    seconds: float = 120.0
    output_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Renderers:
    """The programs that render here, found once per audit.

    ``kubectl`` is the path of kubectl, or None; ``helm`` the command line that
    starts ``helm template`` (a ``helm`` binary, or the SDK in a child Python),
    or None when neither is installed.
    """

    kubectl: str | None
    helm: tuple[str, ...] | None
    limits: Limits = Limits()


def find_renderers(env: Mapping[str, str], limits: Limits | None = None) -> Renderers:
    """kubectl and Helm as found on ``env``'s PATH (Helm: else the helm-python-sdk package)."""
    path = env.get("PATH", os.defpath)
    kubectl = shutil.which("kubectl", path=path)
    helm_binary = shutil.which("helm", path=path)
    helm: tuple[str, ...] | None = None
    if helm_binary:
        helm = (helm_binary, "template")
    elif importlib.util.find_spec("helm_python") is not None:
        helm = (sys.executable, "-m", "webhook.cli.helmsdk")
    return Renderers(kubectl, helm, limits or Limits())


def kustomize_command(source: Source) -> str:
    """The shell command that renders kustomization ``source`` and pipes it into an audit."""
    return f"kubectl kustomize {shlex.quote(str(source.path))} | trustgate audit -"


def helm_command(source: Source, values: Sequence[Path], namespace: str) -> str:
    """The shell command that renders chart ``source`` as the audit does and pipes it in."""
    words = ["helm", "template", str(source.path), "--namespace", namespace]
    for file in values:
        words += ["--values", str(file)]
    return f"{shlex.join(words)} | trustgate audit -"


def refusal(
    sources: Sequence[Source], renderers: Renderers, values: Sequence[Path], namespace: str
) -> str | None:
    """Why ``sources`` cannot be rendered here and what to run instead; None when they can."""
    kustomizations = [s for s in sources if s.kind == "kustomization"]
    charts = [s for s in sources if s.kind == "chart"]
    parts = []
    if kustomizations and renderers.kubectl is None:
        commands = "\n".join(f"  {kustomize_command(s)}" for s in kustomizations)
        parts.append(
            f"{_names(kustomizations)}: a kustomization is judged as `kubectl kustomize` "
            "renders it, and kubectl is not on PATH. Install kubectl (Debian: apt-get install "
            f"kubernetes-client), or render it yourself and pipe it in:\n{commands}"
        )
    if charts and renderers.helm is None:
        commands = "\n".join(f"  {helm_command(s, values, namespace)}" for s in charts)
        parts.append(
            f"{_names(charts)}: a Helm chart is judged as `helm template` renders it, and "
            "neither helm (on PATH) nor the helm-python-sdk package is installed. Install one "
            f"(pip install helm-python-sdk), or render it yourself and pipe it in:\n{commands}"
        )
    return "\n".join(parts) or None


def _names(sources: Sequence[Source]) -> str:
    return ", ".join(str(s.path) for s in sources)


def render(
    source: Source, renderers: Renderers, *, values: Sequence[Path] = (), namespace: str
) -> str:
    """The manifests kustomization or chart ``source`` renders to.

    A chart is rendered as release ``release-name`` in ``namespace``, with the
    ``values`` files in order (later ones win, as with ``helm template -f``).

    Raises:
        RenderError: the tool is missing, fails (its error output quoted), runs past
            the time limit or writes past the output limit, or writes no UTF-8.
    """
    if source.kind == "kustomization":
        if renderers.kubectl is None:
            raise RenderError(f"kubectl is not on PATH; run: {kustomize_command(source)}")
        argv = [renderers.kubectl, "kustomize", str(source.path)]
        tool = "kubectl kustomize"
    elif source.kind == "chart":
        if renderers.helm is None:
            raise RenderError(f"no helm here; run: {helm_command(source, values, namespace)}")
        argv = [*renderers.helm, str(source.path), "--namespace", namespace]
        for file in values:
            argv += ["--values", str(file)]
        tool = "helm template"
    else:
        raise RenderError(f"{source.path}: not a kustomization or a chart")
    out, err, code = run_bounded(argv, renderers.limits, what=f"{tool} {source.path}")
    if code != 0:
        raise RenderError(f"{tool} {source.path} failed (exit {code}): {quote(err)}")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RenderError(f"{tool} {source.path} wrote output that is not UTF-8: {exc}") from exc


def quote(stderr: bytes) -> str:
    """The gist of a tool's error output: its first few lines that are not warnings, shortened."""
    text = stderr.decode("utf-8", "replace")
    lines = [_KLOG.sub("", line.strip()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    # kustomize prefixes deprecation notes with "# Warning:"; the error follows them.
    errors = [line for line in lines if not line.startswith("# Warning:")] or lines
    if not errors:
        return "no error output"
    shown = [
        line if len(line) <= _QUOTE_LINE else line[: _QUOTE_LINE - 3] + "..."
        for line in errors[:_QUOTE_LINES]
    ]
    if len(errors) > _QUOTE_LINES:
        shown.append(f"(and {len(errors) - _QUOTE_LINES} more lines)")
    return " / ".join(shown)


def run_bounded(argv: Sequence[str], limits: Limits, *, what: str) -> tuple[bytes, bytes, int]:
    """Run ``argv``; its standard output, its standard error and its exit code.

    The child gets no standard input and a session of its own, so that a
    timeout or a flood kills it and everything it started.

    Raises:
        RenderError: the program cannot be started, runs longer than
            ``limits.seconds`` or writes more than ``limits.output_bytes``.
    """
    deadline = time.monotonic() + limits.seconds
    try:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise RenderError(f"{what}: cannot start {argv[0]}: {exc}") from exc
    try:
        out, err = _collect(child, deadline, limits, what)
        try:
            code = child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise _too_slow(what, limits) from None
        return out, err, code
    finally:
        _kill(child)


def _collect(
    child: subprocess.Popen[bytes], deadline: float, limits: Limits, what: str
) -> tuple[bytes, bytes]:
    """Read the child's two pipes to their ends, before ``deadline`` and within the limits."""
    assert child.stdout is not None and child.stderr is not None
    out, err = child.stdout.fileno(), child.stderr.fileno()
    buffers = {out: bytearray(), err: bytearray()}
    total = 0
    with selectors.DefaultSelector() as selector:
        selector.register(out, selectors.EVENT_READ)
        selector.register(err, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _too_slow(what, limits)
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                total += len(chunk)
                if total > limits.output_bytes:
                    raise RenderError(
                        f"{what}: stopped after {limits.output_bytes} bytes of output, the "
                        "limit: does the tree generate far more than its manifests? Render it "
                        "yourself and pipe it in (`... | trustgate audit -`) if it is meant to"
                    )
                buffers[key.fd] += chunk
    return bytes(buffers[out]), bytes(buffers[err])


def _too_slow(what: str, limits: Limits) -> RenderError:
    return RenderError(
        f"{what}: stopped after {limits.seconds:g} s without finishing, the limit: does it "
        "read a file that never ends (a named pipe) or fetch a remote base that does not answer?"
    )


def _kill(child: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole session unless it exited and was reaped; close its pipes."""
    if child.returncode is None:
        # Not reaped yet, so its process group cannot have been handed to another process.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    for pipe in (child.stdout, child.stderr):
        if pipe is not None:
            pipe.close()
