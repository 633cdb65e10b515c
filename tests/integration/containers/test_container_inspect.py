"""`inspect` (Docker's ContainerInspect shape, templates, the generic lookup order), OOM reporting, `top`
and `stats` from the container's cgroup."""

from __future__ import annotations

import json
import time

from engine_cli import Engine


def test_inspect_a_running_container(engine: Engine) -> None:
    cid = engine(
        "run",
        "-d",
        "--name",
        "web",
        "-e",
        "A=1",
        "-l",
        "role=test",
        "-v",
        "data:/data",
        "busybox",
        "sleep",
        "300",
    ).stdout.strip()
    [info] = json.loads(engine("inspect", "web").stdout)
    assert info["Id"] == cid
    assert info["Name"] == "/web"
    assert (info["Path"], info["Args"]) == ("sleep", ["300"])
    state = info["State"]
    assert state["Status"] == "running" and state["Running"] and not state["OOMKilled"]
    assert state["Pid"] > 0 and state["StartedAt"].endswith("Z")
    assert info["Image"].startswith("sha256:")
    assert info["Config"]["Labels"]["role"] == "test" and "A=1" in info["Config"]["Env"]
    assert info["Driver"] == "overlay2" and info["Platform"] == "linux"
    graph = info["GraphDriver"]["Data"]
    assert graph["MergedDir"].endswith("/rootfs") and graph["UpperDir"].endswith("/diff")
    assert len(graph["LowerDir"].split(":")) >= 2  # the init layer over the image's layers
    assert [(m["Type"], m["Name"], m["Destination"]) for m in info["Mounts"]] == [("volume", "data", "/data")]
    for key in ("ResolvConfPath", "HostnamePath", "HostsPath", "LogPath"):
        assert info[key].startswith(str(engine.root))
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert engine(
        "container", "inspect", "-f", "{{.State.Running}} {{json .Config.Cmd}}", cid[:12]
    ).stdout == ('true ["sleep","300"]\n')


def test_generic_inspect_order_and_missing_names(engine: Engine) -> None:
    engine("create", "--name", "busybox", "busybox", "true")  # a container named like the image
    engine("volume", "create", "vol")
    kinds = engine("inspect", "-f", "{{.Id}}", "busybox", "busybox:latest", "vol", check=False)
    first, second = kinds.stdout.splitlines()[:2]
    assert len(first) == 64 and second.startswith("sha256:")  # container first, as in Docker
    assert json.loads(engine("inspect", "--type", "image", "busybox").stdout)[0]["Id"].startswith("sha256:")
    assert json.loads(engine("inspect", "vol").stdout)[0]["Name"] == "vol"
    missing = engine("inspect", "vol", "nothing-here", check=False)
    assert missing.returncode == 1
    assert [v["Name"] for v in json.loads(missing.stdout)] == ["vol"]
    assert "No such object: nothing-here" in missing.stderr
    gone = engine("container", "inspect", "nothing-here", check=False)
    assert (gone.returncode, gone.stdout.strip()) == (1, "[]")


def test_oom_kill_is_reported(engine: Engine) -> None:
    proc = engine(
        "run", "--name", "hog", "--memory", "10m", "busybox", "sh", "-c", "tail /dev/zero", check=False
    )
    assert proc.returncode == 137
    state = json.loads(engine("inspect", "hog").stdout)[0]["State"]
    assert (state["Status"], state["OOMKilled"], state["ExitCode"]) == ("exited", True, 137)
    assert engine("inspect", "-f", "{{.State.OOMKilled}}", "hog").stdout == "true\n"


def test_top_lists_the_container_processes(engine: Engine) -> None:
    engine("run", "-d", "--name", "t", "busybox", "sh", "-c", "sleep 301 & sleep 302")
    lines = engine("top", "t").stdout.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    commands = [line.split(None, 7)[7] for line in lines[1:]]
    assert {"sleep 301", "sleep 302"} <= set(commands)
    assert all("pytest" not in c for c in commands)  # only the container's processes
    custom = engine("container", "top", "t", "-o", "pid,comm").stdout.splitlines()
    assert custom[0].split() == ["PID", "COMMAND"] and len(custom) >= 3
    engine("stop", "-t", "0", "t")
    assert engine("top", "t", check=False).returncode == 125


def test_stats_no_stream(engine: Engine) -> None:
    engine("run", "-d", "--name", "s", "--memory", "64m", "--network", "none", "busybox", "sh", "-c",
           "sleep 300 & sleep 301")  # fmt: skip
    engine("create", "--name", "idle", "busybox", "true")
    out = engine("stats", "--no-stream").stdout.splitlines()
    assert out[0].split("   ")[:3] == ["CONTAINER ID", "NAME", "CPU %"]
    assert len(out) == 2 and " s " in out[1]
    row = json.loads(engine("stats", "--no-stream", "--format", "json", "s").stdout)
    usage, limit = row["MemUsage"].split(" / ")
    assert limit == "64MiB" and usage.endswith(("KiB", "MiB")) and not usage.startswith("0B")
    assert row["CPUPerc"].endswith("%") and row["PIDs"] == "2" and row["NetIO"] == "0B / 0B"
    everything = engine(
        "stats", "--no-stream", "-a", "--format", "{{.Name}} {{.MemUsage}}"
    ).stdout.splitlines()
    assert sorted(everything)[0].startswith("idle 0B / ")


def test_stats_counts_the_containers_network_traffic(engine: Engine) -> None:
    script = "gw=$(ip route | awk '/default/ {print $3}'); ping -c 5 -s 1000 $gw >/dev/null && echo pinged; sleep 60"
    engine("run", "-d", "--name", "net", "busybox", "sh", "-c", script)
    deadline = time.monotonic() + 20
    while "pinged" not in engine("logs", "net").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    received, sent = json.loads(engine("stats", "--no-stream", "--format", "json", "net").stdout)[
        "NetIO"
    ].split(" / ")
    assert sent.endswith("kB") and float(sent[:-2]) >= 5  # five 1 kB echo requests over eth0
    assert received.endswith("kB") and float(received[:-2]) >= 5  # and their replies
