"""A plug-in run is bounded: by time (its whole process group killed), by stdout size, by status."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from webhook.credentials.pluginexec import MAX_STDERR_BYTES, PluginRunError, last_line, run

ENV = dict(os.environ)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_stdin_goes_in_and_stdout_comes_out() -> None:
    code = "import sys; data = sys.stdin.read(); print(data.upper(), end='')"
    finished = run(_python(code), b"hello plug-in", ENV, seconds=10, max_stdout=1024)
    assert finished.stdout == b"HELLO PLUG-IN"


def test_a_large_request_is_fed_while_stdout_is_drained() -> None:
    # Both pipes past their buffers: writing all of stdin first would deadlock.
    code = "import sys\nfor line in sys.stdin: sys.stdout.write(line)"
    data = b"x" * 1023 + b"\n"
    finished = run(_python(code), data * 512, ENV, seconds=10, max_stdout=2 * 1024 * 1024)
    assert len(finished.stdout) == 512 * 1024


def test_the_environment_is_the_one_given() -> None:
    code = "import os; print(os.environ.get('PLUGIN_ONLY', 'absent'), end='')"
    assert (
        run(_python(code), b"", {**ENV, "PLUGIN_ONLY": "here"}, seconds=10, max_stdout=64).stdout
        == b"here"
    )
    assert run(_python(code), b"", ENV, seconds=10, max_stdout=64).stdout == b"absent"


def test_a_hanging_plugin_and_its_children_are_killed_at_the_deadline(tmp_path: Path) -> None:
    note = tmp_path / "child"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(note)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    started = time.monotonic()
    with pytest.raises(PluginRunError, match=r"did not finish within 1s and was killed"):
        run(_python(code), b"", ENV, seconds=1.0, max_stdout=64)
    assert time.monotonic() - started < 5
    child = int(note.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the plug-in's child outlived it")


def test_a_plugin_whose_child_keeps_stdout_open_is_cut_at_the_deadline() -> None:
    code = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('{}')\n"
    )
    with pytest.raises(PluginRunError, match="did not finish within"):
        run(_python(code), b"", ENV, seconds=1.0, max_stdout=64)


def test_a_flood_on_stdout_is_cut_at_the_cap() -> None:
    code = "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)"
    started = time.monotonic()
    with pytest.raises(PluginRunError, match="wrote more than 100000 bytes to stdout"):
        run(_python(code), b"", ENV, seconds=30, max_stdout=100_000)
    assert time.monotonic() - started < 10


def test_a_flood_on_stderr_is_drained_not_kept() -> None:
    code = (
        "import sys\nfor _ in range(200): sys.stderr.write('e' * 65536)\nsys.stdout.write('done')"
    )
    finished = run(_python(code), b"", ENV, seconds=30, max_stdout=64)
    assert finished.stdout == b"done"
    assert len(finished.stderr) == MAX_STDERR_BYTES


def test_a_non_zero_exit_says_the_status_and_the_last_stderr_line() -> None:
    code = (
        "import sys\n"
        "print('first', file=sys.stderr)\n"
        "print('Error: no creds', file=sys.stderr)\n"
        "sys.exit(3)"
    )
    with pytest.raises(PluginRunError, match=r"^exited with status 3: Error: no creds$"):
        run(_python(code), b"", ENV, seconds=10, max_stdout=64)


def test_a_plugin_that_cannot_start_says_why(tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(PluginRunError, match="cannot be started: Permission denied"):
        run([str(script)], b"", ENV, seconds=10, max_stdout=64)


def test_a_plugin_that_ignores_stdin_still_answers() -> None:
    finished = run(_python("print('ok', end='')"), b"y" * 300_000, ENV, seconds=10, max_stdout=64)
    assert finished.stdout == b"ok"


def test_the_last_line_of_stderr_is_printable_and_short() -> None:
    assert last_line(b"one\n\x1b[31mtwo\x07\n\n") == "?[31mtwo?"
    assert last_line(b"") == ""
    assert len(last_line(b"z" * 1000)) == 203
