"""`attach`: a detached container's stdio through its conmon, the exit code at the end, and detach keys."""

from __future__ import annotations

import pytest
from engine_cli import Engine

from intermodal.engine.containers.attach import detach_keys


def test_attach_forwards_input_and_returns_the_exit_code(engine: Engine) -> None:
    cid = engine(
        "run", "-d", "-i", "busybox", "sh", "-c", 'read l; echo "got $l"; echo oops >&2; exit 3'
    ).stdout.strip()
    proc = engine("attach", cid, check=False, input="hello\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "got hello\n", "oops\n")


def test_attach_follows_output_of_a_running_container(engine: Engine) -> None:
    cid = engine("run", "-d", "--rm", "busybox", "sh", "-c", "sleep 1; echo late; exit 4").stdout.strip()
    proc = engine("attach", cid, check=False)
    assert (proc.returncode, proc.stdout) == (4, "late\n")


def test_attach_to_a_terminal_container(engine: Engine) -> None:
    cid = engine("run", "-d", "-i", "-t", "busybox", "sh").stdout.strip()
    proc = engine("attach", cid, check=False, input="echo hi-$((40+2))\nexit 7\n")
    assert proc.returncode == 7
    assert "hi-42" in proc.stdout.replace("\r", "")


def test_detach_keys_leave_the_container_running(engine: Engine) -> None:
    cid = engine("run", "-d", "-i", "busybox", "cat").stdout.strip()
    proc = engine("attach", "--detach-keys", "ctrl-x,q", cid, check=False, input="abc\x18q")
    assert (proc.returncode, proc.stderr.strip()) == (1, "read escape sequence")
    assert engine("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "true"


def test_attach_to_a_stopped_container_is_refused(engine: Engine) -> None:
    cid = engine("create", "busybox", "true").stdout.strip()
    proc = engine("attach", cid, check=False)
    assert proc.returncode == 125 and "start it first" in proc.stderr


@pytest.mark.parametrize(
    ("spec", "keys"), [("ctrl-p,ctrl-q", b"\x10\x11"), ("a,ctrl-@,ctrl-]", b"a\x00\x1d")]
)
def test_detach_keys_are_parsed_as_docker_does(spec: str, keys: bytes) -> None:
    assert detach_keys(spec) == keys
    with pytest.raises(ValueError, match="invalid detach keys"):
        detach_keys("ctrl-pq")
