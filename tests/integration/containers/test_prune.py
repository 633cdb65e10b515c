"""`system prune`: what nothing uses goes, in Docker's order; what a container uses stays."""

from __future__ import annotations

from engine_cli import Engine


def test_system_prune_removes_only_unused_things(engine: Engine) -> None:
    engine("run", "-d", "--name", "running", "-v", "kept:/data", "busybox", "sleep", "60")
    engine("run", "--name", "stopped", "-v", "/scratch", "busybox", "true")
    engine("network", "create", "unused")
    engine("volume", "create", "named")
    anonymous = {v for v in engine("volume", "ls", "-q").stdout.split()} - {"kept", "named"}
    assert len(anonymous) == 1

    declined = engine("system", "prune", check=False)  # no answer on stdin: nothing is removed
    assert declined.returncode != 0 and "all stopped containers" in declined.stdout
    assert "stopped" in engine("ps", "-a", "--format", "{{.Names}}").stdout.split()

    out = engine("system", "prune", "-f", "--volumes").stdout
    assert "Deleted Containers:" in out and "Deleted Networks:\nunused\n" in out
    assert engine("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["running"]
    assert set(engine("volume", "ls", "-q").stdout.split()) == {"kept", "named"}  # anonymous went, named stay
    assert "unused" not in engine("network", "ls", "--format", "{{.Name}}").stdout.split()

    engine("system", "prune", "-af")
    assert engine("images", "--format", "{{.Repository}}").stdout.split() == ["busybox"]  # the running one's
    engine("rm", "-f", "running")
    engine("system", "prune", "-af")
    assert engine("images", "-q").stdout == ""
