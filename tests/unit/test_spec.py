"""The spec builder: schema-valid configs with Docker's secure defaults, and flag arithmetic."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from intermodal.errors import InvalidArgument
from intermodal.runtime import capabilities, seccomp
from intermodal.runtime import spec as oci

SCHEMA_DIR = Path("/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema")
BASE = "file://" + str(SCHEMA_DIR) + "/"


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    if not SCHEMA_DIR.is_dir():
        pytest.skip("runtime-spec schema not installed (Debian golang-github-opencontainers-specs-dev)")
    registry: Registry = Registry()
    for path in SCHEMA_DIR.glob("*.json"):
        registry = registry.with_resource(
            BASE + path.name, Resource.from_contents(json.loads(path.read_text()), DRAFT4)
        )
    schema = json.loads((SCHEMA_DIR / "config-schema.json").read_text())
    return Draft4Validator({**schema, "id": BASE + "config-schema.json"}, registry=registry)


def _errors(validator: Draft4Validator, spec: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(spec)]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"privileged": True, "terminal": True, "read_only": True},
        {"uid": 1000, "gid": 1000, "additional_gids": [5, 6], "hostname": "web", "cap_add": ["NET_ADMIN"],
         "cap_drop": ["chown"], "seccomp_profile": None, "ulimits": {"nofile": (100, 200)},
         "mounts": [oci.bind_mount("/srv", "/data", readonly=True)], "cgroups_path": "/intermodal/x",
         "namespaces": {"network": "/proc/1/ns/net"}, "annotations": {"a": "b"},
         "linux_resources": oci.resources(memory=64 << 20, cpus=1.5, cpu_shares=512, cpuset_cpus="0",
                                          pids_limit=100, memory_reservation=32 << 20)},
    ],
)  # fmt: skip
def test_configs_validate_against_the_runtime_spec_schema(
    validator: Draft4Validator, options: dict[str, Any]
) -> None:
    assert _errors(validator, oci.default_spec(["sh", "-c", "true"], **options)) == []


def test_schema_check_is_not_vacuous(validator: Draft4Validator) -> None:
    spec = oci.default_spec(["sh"])
    spec["process"]["rlimits"][0]["soft"] = -1
    spec["linux"]["namespaces"].append({"type": "bogus"})
    assert len(_errors(validator, spec)) >= 2


def test_docker_defaults() -> None:
    spec = oci.default_spec(["sh"])
    proc, linux = spec["process"], spec["linux"]
    assert proc["noNewPrivileges"] is True
    assert set(proc["capabilities"]["bounding"]) == {f"CAP_{c}" for c in ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"]}  # fmt: skip
    assert proc["capabilities"]["effective"] == proc["capabilities"]["bounding"]
    assert "inheritable" not in proc["capabilities"]  # empty since CVE-2022-24769
    assert {ns["type"] for ns in linux["namespaces"]} == {"pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert "/proc/kcore" in linux["maskedPaths"] and "/sys/firmware" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    assert linux["seccomp"] == seccomp.default_profile()
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    pts = next(m for m in spec["mounts"] if m["destination"] == "/dev/pts")
    assert "newinstance" in pts["options"] and "ptmxmode=0666" in pts["options"]
    assert next(m for m in spec["mounts"] if m["destination"] == "/sys")["options"][-1] == "ro"
    assert any(e.startswith("PATH=") for e in proc["env"])


def test_rlimits_are_the_callers_not_invented() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = next(r for r in oci.caller_rlimits() if r["type"] == "RLIMIT_NOFILE")
    assert (nofile["soft"], nofile["hard"]) == (soft, hard)
    core = next(r for r in oci.caller_rlimits({"core": (0, 0)}) if r["type"] == "RLIMIT_CORE")
    assert (core["soft"], core["hard"]) == (0, 0)
    with pytest.raises(InvalidArgument):
        oci.caller_rlimits({"bogus": (1, 1)})


def test_privileged_drops_confinement() -> None:
    spec = oci.default_spec(["sh"], privileged=True)
    assert spec["process"]["capabilities"]["bounding"] == list(capabilities.bounding_set())
    assert "maskedPaths" not in spec["linux"] and "seccomp" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


@pytest.mark.parametrize(
    ("add", "drop", "expect_in", "expect_out"),
    [
        (["net_admin"], [], "CAP_NET_ADMIN", None),
        ([], ["CAP_CHOWN"], None, "CAP_CHOWN"),
        (["ALL"], ["SYS_ADMIN"], "CAP_SYS_PTRACE", "CAP_SYS_ADMIN"),
        (["KILL"], ["ALL"], "CAP_KILL", "CAP_CHOWN"),
    ],
)
def test_cap_add_drop(add: list[str], drop: list[str], expect_in: str | None, expect_out: str | None) -> None:
    caps = oci.resolve_caps(add, drop)
    assert expect_in is None or expect_in in caps
    assert expect_out is None or expect_out not in caps
    with pytest.raises(InvalidArgument):
        oci.resolve_caps(["CAP_NOPE"])


def test_resources_follow_docker_flag_semantics() -> None:
    res = oci.resources(memory=100, cpus=0.5)
    assert res["memory"] == {"limit": 100, "swap": 200}  # --memory alone: swap as large as memory
    assert res["cpu"] == {"quota": 50_000, "period": 100_000}
    assert oci.resources(memory=100, memory_swap=-1)["memory"]["swap"] == -1
    with pytest.raises(InvalidArgument):
        oci.resources(memory_swap=100)
    with pytest.raises(InvalidArgument):
        oci.default_spec([])
