"""The container lifecycle every frontend shares: create, start (detached under conmon or in the
foreground), stop, kill, restart, rm, wait, pause, and the status refresh that makes a daemonless engine
agree with itself: state is read from disk and checked against the live monitor on every command."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intermodal.engine.containers.record import (
    CREATED,
    EXITED,
    PAUSED,
    RESTARTING,
    RUNNING,
    ContainerRecord,
    ContainerStore,
    Paths,
    random_name,
)
from intermodal.errors import Conflict, IntermodalError, InvalidArgument, NotFound
from intermodal.fsutil import read_json
from intermodal.lazy import lazy_import
from intermodal.runtime.state import process_start_time

if TYPE_CHECKING:
    from intermodal.engine import volumes as volume_specs
    from intermodal.engine.containers import attach, monitor, userns
    from intermodal.engine.containers import bundle as bundles
    from intermodal.engine.containers import options as run_options
    from intermodal.engine.containers.options import RunOptions
    from intermodal.engine.images import ImageService
    from intermodal.engine.networks import NetworkService
    from intermodal.engine.volumes import VolumeStore
    from intermodal.image.snapshots import Snapshotter
    from intermodal.isolation import oci
    from intermodal.isolation.oci import OciRuntime
    from intermodal.runtime import cgroups
else:
    # Only `run`/`start` need the bundle, monitor and network machinery; `ps` and friends skip loading it.
    bundles = lazy_import("intermodal.engine.containers.bundle")
    monitor = lazy_import("intermodal.engine.containers.monitor")
    attach = lazy_import("intermodal.engine.containers.attach")
    run_options = lazy_import("intermodal.engine.containers.options")
    userns = lazy_import("intermodal.engine.containers.userns")
    volume_specs = lazy_import("intermodal.engine.volumes")
    oci = lazy_import("intermodal.isolation.oci")
    cgroups = lazy_import("intermodal.runtime.cgroups")

ACTIVE = (RUNNING, PAUSED, RESTARTING)
_STALE_EXIT_SECONDS = 10.0  # an exit file nobody cleaned up for this long means conmon's cleanup died


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ContainerService:
    def __init__(self, root: Path):
        self.root = root
        self.store = ContainerStore(root)

    @functools.cached_property
    def images(self) -> ImageService:
        from intermodal.engine.images import ImageService

        return ImageService(self.root, containers_using=self.using_image)

    @functools.cached_property
    def volumes(self) -> VolumeStore:
        return volume_specs.VolumeStore(self.root)

    @functools.cached_property
    def snapshots(self) -> Snapshotter:
        from intermodal.image.snapshots import Snapshotter

        return Snapshotter(self.root / "snapshots", self.images.store.content)

    @functools.cached_property
    def networks(self) -> NetworkService:
        from intermodal.engine.networks import NetworkService

        return NetworkService(self.root)

    # -- helpers --------------------------------------------------------------------------------------------

    def paths(self, cid: str) -> Paths:
        return Paths(self.store.dir(cid))

    def runtime(self, record: ContainerRecord) -> OciRuntime:
        return oci.open_runtime(record.runtime, self.root / "run", self.root / "bin")

    def using_image(self, image_id: str) -> list[str]:
        return [r.id for r in self.store.all() if r.image == image_id]

    def get(self, spec: str) -> ContainerRecord:
        return self.refresh(self.store.resolve(spec))

    def containers(self, all_containers: bool = False) -> list[ContainerRecord]:
        records = [self.refresh(r) for r in self.store.all()]
        if self._network_state_may_be_stale(records):
            self.networks.gc()  # release networks of containers whose monitor died
        records.sort(key=lambda r: r.created, reverse=True)
        return records if all_containers else [r for r in records if r.status in ACTIVE]

    def _network_state_may_be_stale(self, records: list[ContainerRecord]) -> bool:
        """Whether a namespace is pinned for a container that is not running: only then is the network GC
        (and its import) worth paying for on a listing. A lease without a pin is collected by the next run."""
        ns_dir = self.root / "netns"
        if not ns_dir.is_dir():
            return False
        running = {r.id for r in records if r.status in ACTIVE}
        return any(name not in running for name in os.listdir(ns_dir))

    # -- create ---------------------------------------------------------------------------------------------

    def _image_for(self, opts: RunOptions, progress: Callable[[Any], None] | None) -> Any:
        """Docker's --pull missing|always|never; pulling is imported only when it is needed."""
        if opts.pull not in ("missing", "always", "never"):
            raise InvalidArgument(f"invalid --pull {opts.pull!r}: choose missing, always or never")
        if opts.pull != "always":
            try:
                return self.images.get(opts.image)
            except NotFound:
                if opts.pull == "never":
                    raise
        from intermodal.engine.distribution import ensure_image

        try:
            return ensure_image(self.root, opts.image, opts.pull, progress=progress or (lambda event: None))
        except IntermodalError as e:
            raise NotFound(
                f"unable to find image {opts.image!r} locally, and pulling it failed: {e}"
            ) from None

    def create(self, opts: RunOptions, progress: Callable[[Any], None] | None = None) -> ContainerRecord:
        """Validate everything, then publish the record. Nothing is written if any input is bad."""
        image = self._image_for(opts, progress)
        full_config = self.images.config(image)
        if opts.platform:
            run_options.check_platform(opts.platform, opts.image, full_config.raw)
        image_config = full_config.config
        cid = self.store.new_id()
        config = run_options.container_config(opts, image_config, cid)
        engine_config = read_json(self.root / "config.json", {}) or {}
        if not (opts.isolation or opts.runtime):
            opts.isolation = engine_config.get("isolation", "")
        default_userns = not opts.userns
        if default_userns:  # Docker's daemon-wide userns-remap: {"userns": "auto"}; --userns=host opts out
            opts.userns = engine_config.get("userns", "")
        hc = run_options.host_config(opts)
        private_userns = hc["UsernsMode"] in userns.PRIVATE_MODES
        if private_userns and hc["Runtime"] == oci.VM:
            if not default_userns:
                raise InvalidArgument(
                    "--userns=auto needs a container runtime: a micro-VM has its own kernel"
                )
            hc["UsernsMode"], private_userns = "", False
        self.networks.check(hc)
        for mode in ("PidMode", "IpcMode"):
            if hc[mode].startswith("container:"):
                self.store.resolve(
                    hc[mode].partition(":")[2]
                )  # no such container: an error now, not at start
        if hc["NetworkMode"].startswith("container:"):  # Docker: the joined container's host name too
            config["Hostname"] = self.store.resolve(hc["NetworkMode"].partition(":")[2]).config["Hostname"]
        for v in hc["Binds"]:
            request = volume_specs.parse_volume_flag(v)
            if request.type == "bind" and not os.path.exists(request.source):
                raise InvalidArgument(
                    f"invalid volume {v!r}: bind source path does not exist: {request.source}"
                )
        for m in hc["Mounts"]:
            request = volume_specs.parse_mount_flag(m)
            if request.type == "bind" and not os.path.exists(request.source):
                raise InvalidArgument(
                    f"invalid mount {m!r}: bind source path does not exist: {request.source}"
                )
        for t in hc["Tmpfs"]:
            volume_specs.parse_tmpfs_flag(t)
        runtime = hc["Runtime"]
        oci.open_runtime(runtime, self.root / "run", self.root / "bin")  # unknown runtime → error now
        name = opts.name.removeprefix("/") or random_name(lambda n: self.store.name_owner(n) is not None)
        record = ContainerRecord(
            id=cid,
            name=name,
            created=now(),
            image=image.config,
            image_name=opts.image,
            config=config,
            host_config=hc,
            runtime=runtime,
        )
        if private_userns:
            with userns.allocate(self.root, self.store, record):
                self.store.add(record)
        else:
            self.store.add(record)
        return record

    # -- start ----------------------------------------------------------------------------------------------

    def _joined_namespaces(self, record: ContainerRecord) -> dict[str, int]:
        """--pid container:X: {"pid": the PID of X's init}; X must be running here."""
        mode = str(record.host_config.get("PidMode") or "")
        if not mode.startswith("container:"):
            return {}
        name = mode.partition(":")[2]
        owner = self.get(name)
        if owner.status not in (RUNNING, PAUSED):
            raise Conflict(
                f"cannot join the PID namespace of container {name}: it is {owner.status}: start it first"
            )
        if owner.runtime == oci.VM:
            raise InvalidArgument(f"cannot join the PID namespace of container {name}: it is a micro-VM")
        return {"pid": int(owner.state["Pid"])}

    def _prepare(self, record: ContainerRecord) -> Paths:
        paths = self.paths(record.id)
        bundles.mount_rootfs(self.images.store, self.snapshots, record, paths)
        try:
            mounts = bundles.resolve_mounts(record, self.volumes, paths)
            network = self.networks.attach(record)
            bundles.write_etc_files(record, paths, network)
            bundles.give_to_container_root(record, paths)
            if record.runtime not in (oci.BUILTIN, "crun") and os.path.basename(record.runtime) != "crun":
                bundles.check_runtime_can_reach(record, paths)
            spec = bundles.build_spec(
                record, paths, mounts, network.namespace, self._joined_namespaces(record)
            )
            bundles.write_bundle(spec, paths)
        except BaseException:
            self.networks.detach(record.id)
            bundles.unmount_rootfs(paths)
            raise
        record.mounts = mounts
        for stale in (paths.dir / "pidfile", paths.exits / record.id):
            stale.unlink(missing_ok=True)
        return paths

    def start(self, spec: str) -> ContainerRecord:
        """Start detached under conmon (Docker's `start` / `run -d`)."""
        record = self.store.resolve(spec)
        with self.store.locked(record.id):
            record = self.refresh(self.store.load(record.id), locked=True)
            if record.status in (RUNNING, PAUSED):
                return record
            paths = self._prepare(record)
            runtime = self.runtime(record)
            runtime.delete(record.id)  # a leftover from a crashed run must not block create
            try:
                token = os.urandom(8).hex()
                pid = monitor.launch(
                    self.root, record, paths, runtime, self.networks.held_fds(record.id), token
                )
                runtime.start(record.id)
            except BaseException as e:
                self._abort_start(record, runtime, paths, e, locked=True)
                raise
            finally:
                self.networks.drop_held(record.id)
            record.monitor_pid = monitor.monitor_pid(paths)
            record.monitor_start = process_start_time(record.monitor_pid) or 0
            record.monitor_token = token
            self._mark_running(record, pid)
            self.store.save(record)
        return record

    def run_attached(self, spec: str, *, interactive: bool) -> int:
        """Run in the foreground with this process as the monitor; returns the container's exit code."""
        record = self.store.resolve(spec)
        with self.store.locked(record.id):
            record = self.refresh(self.store.load(record.id), locked=True)
            if record.status in (RUNNING, PAUSED):
                raise Conflict(f"container {record.name} is already running")
            paths = self._prepare(record)
            runtime = self.runtime(record)
            runtime.delete(record.id)
            record.monitor_pid = os.getpid()
            record.monitor_start = process_start_time(os.getpid()) or 0
            record.monitor_token = ""  # no conmon, no exit command
            self.store.save(record)

        def started(pid: int) -> None:
            with self.store.locked(record.id):
                current = self.store.load(record.id)
                current.monitor_pid, current.monitor_start = record.monitor_pid, record.monitor_start
                current.mounts = record.mounts
                self._mark_running(current, pid)
                self.store.save(current)

        try:
            shown = {s for s in ("stdout", "stderr") if record.config.get(f"Attach{s.capitalize()}", True)}
            code = attach.run_foreground(
                runtime, record.id, paths, interactive=interactive, terminal=bool(record.config.get("Tty")),
                on_started=started, shown=shown, keep_log=record.log_driver != "none",
            )  # fmt: skip
        except BaseException as e:
            self._abort_start(record, runtime, paths, e, locked=False)
            raise
        self.finalize(record.id, code, allow_restart=True)  # a restart goes on detached, as Docker's does
        return code

    def _mark_running(self, record: ContainerRecord, pid: int) -> None:
        record.state.update(
            Status=RUNNING, Running=True, Paused=False, Restarting=False, OOMKilled=False, Dead=False,
            Pid=pid, ExitCode=0, Error="", StartedAt=now(),
        )  # fmt: skip
        record.explicitly_stopped = False

    def _abort_start(
        self,
        record: ContainerRecord,
        runtime: OciRuntime,
        paths: Paths,
        error: BaseException,
        *,
        locked: bool,
    ) -> None:
        """A start that failed leaves the container stopped with the reason, and nothing mounted."""
        runtime.delete(record.id)
        self.networks.detach(record.id)
        bundles.unmount_rootfs(paths)
        with self.store.locked(record.id) if not locked else contextlib.nullcontext():
            current = self.store.load(record.id)
            code = getattr(error, "exit_code", 125) if isinstance(error, IntermodalError) else 125
            current.state.update(
                Status=EXITED if current.state["StartedAt"] != "0001-01-01T00:00:00Z" else CREATED,
                Running=False, Pid=0, ExitCode=code, Error=str(error), FinishedAt=now(),
            )  # fmt: skip
            self.store.save(current)

    # -- exit handling ----------------------------------------------------------------------------------------

    def monitor_alive(self, record: ContainerRecord) -> bool:
        return record.monitor_pid > 0 and process_start_time(record.monitor_pid) == record.monitor_start

    def refresh(self, record: ContainerRecord, locked: bool = False) -> ContainerRecord:
        """Derive the live status: an exit recorded by conmon, or a dead monitor (garbage-collect then)."""
        if record.status not in ACTIVE:
            return record
        exit_file = self.paths(record.id).exits / record.id
        if exit_file.exists():
            code = _read_exit(exit_file)
            stale = time.time() - exit_file.stat().st_mtime > _STALE_EXIT_SECONDS
            if stale or not self.monitor_alive(record):
                return self.finalize(record.id, code, allow_restart=False, locked=locked) or record
            view = ContainerRecord(**{**record.__dict__, "state": dict(record.state)})
            finished = dt.datetime.fromtimestamp(exit_file.stat().st_mtime, dt.UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            )
            view.state.update(Status=EXITED, Running=False, Pid=0, ExitCode=code, FinishedAt=finished)
            return view
        if record.status == RESTARTING or self.monitor_alive(record):
            return record
        # The monitor is gone without recording an exit (killed -9, machine crash): reclaim everything.
        return (
            self.finalize(record.id, 137, allow_restart=False, locked=locked, error="monitor died") or record
        )

    def finalize(
        self,
        cid: str,
        code: int,
        *,
        allow_restart: bool,
        locked: bool = False,
        error: str = "",
        instance: str | None = None,
    ) -> ContainerRecord | None:
        """Record the exit, release the runtime state, cgroup and rootfs mount; then --rm or restart.
        `instance`: the exit is that conmon instance's (its token), and nothing to do if another runs now."""
        with self.store.locked(cid) if not locked else contextlib.nullcontext():
            try:
                record = self.store.load(cid)
            except IntermodalError:
                return None
            if record.status not in ACTIVE or (instance is not None and record.monitor_token != instance):
                return record
            paths = self.paths(cid)
            runtime = self.runtime(record)
            oom = _oom_killed(cid) or runtime.oom_killed(cid, paths.bundle)
            if record.state.get("Pid"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(record.state["Pid"], signal.SIGKILL)
            runtime.delete(cid)
            _remove_cgroup(cid)
            self.networks.detach(cid, exited=True)
            bundles.unmount_rootfs(paths)
            record.state.update(
                Status=EXITED, Running=False, Paused=False, Restarting=False, Pid=0, ExitCode=code,
                OOMKilled=oom, FinishedAt=now(), Error=error,
            )  # fmt: skip
            record.monitor_pid = record.monitor_start = 0
            restart = allow_restart and _should_restart(record)
            if restart:
                record.state.update(Status=RESTARTING, Restarting=True)
                record.restart_count += 1
            self.store.save(record)
            # Only now: until the record says exited, the exit file is what tells readers it has.
            (paths.exits / cid).unlink(missing_ok=True)
        if record.host_config.get("AutoRemove") and not restart:
            self.remove(cid, force=True, volumes=True)
            return None
        if restart:
            time.sleep(min(0.1 * 2 ** (record.restart_count - 1), 10))
            with contextlib.suppress(IntermodalError):
                self.start(cid)
        return record

    def cleanup(self, cid: str, instance: str | None = None) -> None:
        """conmon's exit command: the container exited; record it and apply the restart policy. `instance`:
        the exiting conmon's token; a later instance (`restart` started it already) is left alone."""
        exit_file = self.paths(cid).exits / cid
        code = _read_exit(exit_file) if exit_file.exists() else 255
        self.finalize(cid, code, allow_restart=True, instance=instance)

    # -- stop / kill / remove ---------------------------------------------------------------------------------

    def kill(self, spec: str, sig: str = "SIGKILL") -> ContainerRecord:
        record = self.get(spec)
        if record.status not in (RUNNING, PAUSED):
            raise Conflict(f"cannot kill container {spec}: container {record.id[:12]} is not running")
        number = bundles.stop_signal_number(sig)
        with self.store.locked(record.id):
            current = self.store.load(record.id)
            current.explicitly_stopped = True
            self.store.save(current)
        if record.status == PAUSED:
            cgroups.open_cgroup(f"intermodal/{record.id}").thaw()
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.state["Pid"], number)
        return record

    def stop(self, spec: str, timeout: int | None = None) -> ContainerRecord:
        """Stop signal, then SIGKILL after the timeout (Docker's default 10 s)."""
        record = self.get(spec)
        if record.status not in (RUNNING, PAUSED, RESTARTING):
            return record
        with self.store.locked(record.id):
            current = self.store.load(record.id)
            current.explicitly_stopped = True
            self.store.save(current)
        if timeout is None:
            timeout = int(record.config.get("StopTimeout", 10))
        if record.status == PAUSED:
            cgroups.open_cgroup(f"intermodal/{record.id}").thaw()
        pid = record.state["Pid"]
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, bundles.stop_signal_number(record.config.get("StopSignal") or "SIGTERM"))
            if not self._wait_exit(record, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_exit(record, 10)
        return self.wait_finalized(record.id)

    def _wait_exit(self, record: ContainerRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process_start_time(record.state["Pid"]) is None:
                return True
            time.sleep(0.02)
        return False

    def wait_finalized(self, cid: str, timeout: float = 15) -> ContainerRecord:
        """Wait until the exit is recorded; finalize it ourselves once conmon has written the exit file
        (the caller stopped the container on purpose, so no restart policy applies)."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.store.load(cid)
            if record.status not in ACTIVE:
                return record
            exit_file = self.paths(cid).exits / cid
            if exit_file.exists() or time.monotonic() > deadline:
                code = _read_exit(exit_file) if exit_file.exists() else 137
                return self.finalize(cid, code, allow_restart=False) or record
            if not self.monitor_alive(record):
                return self.refresh(record)
            time.sleep(0.02)

    def attach(self, spec: str, *, stdin: bool, sig_proxy: bool, keys: bytes) -> int:
        """`docker attach`: join a detached container's stdio through its monitor; returns its exit code
        (attach.Detached when the user typed the detach keys)."""
        record = self.get(spec)
        if record.status not in (RUNNING, PAUSED):
            raise Conflict(f"cannot attach to container {spec}: it is {record.status}: start it first")
        paths = self.paths(record.id)
        if not (paths.bundle / "attach").exists():
            raise Conflict(
                f"cannot attach to container {spec}: it runs in the foreground of the command that started it"
            )
        attach.attach_to_monitor(paths.bundle, int(record.state.get("Pid") or 0), keys=keys,
                                 stdin=stdin and bool(record.config.get("OpenStdin")),
                                 terminal=bool(record.config.get("Tty")), sig_proxy=sig_proxy)  # fmt: skip
        exit_file = paths.exits / record.id
        if exit_file.exists():  # read at once: an --rm container's files go with it
            return _read_exit(exit_file)
        return self.wait(record.id)

    def wait(self, spec: str, condition: str = "not-running") -> int:
        record = self.store.resolve(spec)
        while True:
            current = self.refresh(self.store.load(record.id))
            if condition == "next-exit" and current.status == EXITED:
                return int(current.state["ExitCode"])
            if current.status not in ACTIVE:
                return int(current.state["ExitCode"])
            time.sleep(0.05)

    def remove(self, spec: str, *, force: bool = False, volumes: bool = False) -> str:
        record = self.store.resolve(spec)
        record = self.refresh(record)
        if record.status in ACTIVE:
            if not force:
                raise Conflict(
                    f"cannot remove container {spec}: container is {record.status}: stop it first or use rm -f"
                )
            with self.store.locked(record.id):
                current = self.store.load(record.id)
                current.explicitly_stopped = True
                self.store.save(current)
            if record.state.get("Pid"):
                with contextlib.suppress(ProcessLookupError):
                    if record.status == PAUSED:
                        cgroups.open_cgroup(f"intermodal/{record.id}").thaw()
                    os.kill(record.state["Pid"], signal.SIGKILL)
            self.finalize(record.id, 137, allow_restart=False)
        with self.store.locked(record.id):
            paths = self.paths(record.id)
            bundles.unmount_rootfs(paths)
            _remove_cgroup(record.id)
            if volumes:
                for m in record.mounts:
                    if m["Type"] == "volume" and self._is_anonymous(m["Name"]):
                        with contextlib.suppress(IntermodalError):
                            self.volumes.remove(m["Name"], in_use_by=self._volume_users(m["Name"], record.id))
            (paths.dir / "container.json").unlink(missing_ok=True)
        self.store.release_name(record.name, record.id)
        bundles.remove_files(paths)
        return record.id

    def _is_anonymous(self, name: str) -> bool:
        with contextlib.suppress(IntermodalError):
            return "com.docker.volume.anonymous" in self.volumes.inspect(name)["Labels"]
        return False

    def _volume_users(self, name: str, except_id: str = "") -> list[str]:
        return [
            r.id
            for r in self.store.all()
            if r.id != except_id and any(m.get("Name") == name for m in r.mounts)
        ]

    def volume_users(self, name: str) -> list[str]:
        return self._volume_users(name)

    def pause(self, spec: str) -> None:
        record = self.get(spec)
        if record.status != RUNNING:
            raise Conflict(f"cannot pause container {spec}: it is {record.status}, not running")
        cgroups.open_cgroup(f"intermodal/{record.id}").freeze()
        self._set_state(record.id, Status=PAUSED, Paused=True)

    def unpause(self, spec: str) -> None:
        record = self.get(spec)
        if record.status != PAUSED:
            raise Conflict(f"cannot unpause container {spec}: it is not paused")
        cgroups.open_cgroup(f"intermodal/{record.id}").thaw()
        self._set_state(record.id, Status=RUNNING, Paused=False)

    def _set_state(self, cid: str, **changes: Any) -> None:
        with self.store.locked(cid):
            record = self.store.load(cid)
            record.state.update(changes)
            self.store.save(record)

    def update(self, spec: str, changes: dict[str, Any]) -> ContainerRecord:
        """`docker update`: new cgroup limits (RunOptions field -> flag value) and/or restart policy. They are
        checked together with the limits the container already has, written to its record (so the next start
        uses them) and, while it runs, handed to its runtime (`update --resources`)."""
        cid = self.store.resolve(spec).id
        with self.store.locked(cid):
            live = self.refresh(self.store.load(cid), locked=True).status in (RUNNING, PAUSED)
            record = self.store.load(cid)  # as stored: refresh may have finalized it, or returned a view
            hc = record.host_config
            current = run_options.RunOptions(
                image="", memory=str(hc.get("Memory") or ""), memory_swap=str(hc.get("MemorySwap") or ""),
                memory_reservation=str(hc.get("MemoryReservation") or ""),
                cpus=str(hc["NanoCpus"] / 1e9) if hc.get("NanoCpus") else "", cpu_shares=hc.get("CpuShares") or 0,
                cpu_quota=hc.get("CpuQuota") or 0, cpu_period=hc.get("CpuPeriod") or 0,
                cpuset_cpus=hc.get("CpusetCpus") or "", pids_limit=hc.get("PidsLimit") or 0,
            )  # fmt: skip
            restart = changes.pop("restart", None)
            for key, value in changes.items():
                setattr(current, key, value)
            limits = run_options.resource_config(current)
            if restart is not None:
                hc["RestartPolicy"] = run_options.parse_restart(restart)
                if hc.get("AutoRemove") and hc["RestartPolicy"]["Name"] != "no":
                    raise InvalidArgument("conflicting options: --restart and an --rm container")
            if changes and live and record.runtime == oci.VM:
                raise Conflict(
                    f"cannot change the limits of running micro-VM {spec}: its memory and CPUs are fixed at boot; "
                    "stop it, update, and start it again"
                )
            hc.update(limits)
            if changes and live:
                resources = {k: v for k, v in bundles.linux_resources(hc).items() if k != "devices"}
                self.runtime(record).update(record.id, resources)
            self.store.save(record)
        return record

    def rename(self, spec: str, new_name: str) -> None:
        record = self.store.resolve(spec)
        self.store.rename(record.id, new_name.removeprefix("/"))

    def prune(self) -> list[str]:
        removed = []
        for record in self.containers(all_containers=True):
            if record.status in (EXITED, CREATED, "dead"):
                with contextlib.suppress(IntermodalError):
                    removed.append(self.remove(record.id))
        return removed

    def restart(self, spec: str, timeout: int | None = None) -> ContainerRecord:
        record = self.stop(spec, timeout)
        return self.start(record.id)

    def for_each(self, specs: list[str], action: Callable[[str], object]) -> list[IntermodalError]:
        errors = []
        for spec in specs:
            try:
                action(spec)
            except IntermodalError as e:
                errors.append(e)
        return errors


def _read_exit(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 255)
    except (OSError, ValueError):
        return 255


def _oom_killed(cid: str) -> bool:
    with contextlib.suppress(OSError, IntermodalError):
        return cgroups.open_cgroup(f"intermodal/{cid}").oom_killed()
    return False


def _remove_cgroup(cid: str) -> None:
    """Kill what is left and remove the cgroup; a loaded machine may take a while to release its tasks."""
    group = cgroups.open_cgroup(f"intermodal/{cid}")
    deadline = time.monotonic() + 10
    while group.exists() and time.monotonic() < deadline:
        with contextlib.suppress(OSError, IntermodalError):
            group.delete()


def _should_restart(record: ContainerRecord) -> bool:
    policy = record.host_config.get("RestartPolicy") or {"Name": "no"}
    name = policy.get("Name", "no")
    if record.explicitly_stopped or name == "no":
        return False
    if name in ("always", "unless-stopped"):
        return True
    limit = int(policy.get("MaximumRetryCount") or 0)
    return record.state["ExitCode"] != 0 and (limit == 0 or record.restart_count < limit)
