"""The Dockerfile executor: stages in dependency order, one cached step per instruction, the final image
assembled on top of the FROM image.

Every step has a cache key (``cache.step_key``) built from its parent's key and what the step depends on:
the instruction after expansion, for RUN the environment and build args in effect, for COPY/ADD the
content of the selected files. Steps that change files (RUN, COPY, ADD, WORKDIR) run on an overlay of the
stage's layers (``fs.StepFs``) and their upper dir becomes the layer; metadata steps only change the
config. History and config follow BuildKit (``RUN |1 A=b /bin/sh -c … # buildkit``, ``CMD ["sh"]``).

A cached step reuses the time it first ran, so rebuilding an unchanged Dockerfile gives the same image ID.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import posixpath
import secrets
import shutil
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from intermodal.build.dockerfile import (
    PROXY_ARGS,
    Dockerfile,
    DockerfileError,
    Instruction,
    ResolvedStage,
    global_args,
    parse,
    parse_mount,
    resolve_arg,
    resolve_stages,
)
from intermodal.build.dockerignore import Matcher, read_dockerignore
from intermodal.build.expand import expand_heredoc
from intermodal.engine.build import context as ctx
from intermodal.engine.build.cache import BuildCache, CacheEntry, step_key
from intermodal.engine.build.fs import (
    LAYER_MEDIA_TYPE,
    Layers,
    Placed,
    StepFs,
    copy_in,
    dir_in_root,
    open_archive,
    unmount,
)
from intermodal.engine.build.fs import read_only as mount_read_only
from intermodal.engine.build.progress import Progress
from intermodal.engine.build.run import Secret, prepare_mounts, run_step
from intermodal.engine.containers.bundle import Paths, stop_signal_number
from intermodal.engine.containers.userdb import resolve_user
from intermodal.engine.teardown import remove_tree
from intermodal.errors import IntermodalError, InvalidArgument, NotFound
from intermodal.image.assemble import HistoryEntry, assemble
from intermodal.image.layer import LayerInfo, apply_layer
from intermodal.image.snapshots import Snapshotter
from intermodal.image.store import ImageRecord, ImageStore
from intermodal.runtime.spec import DEFAULT_PATH

_DEFAULT_SHELL = ["/bin/sh", "-c"]
_FILE_STEPS = frozenset({"RUN", "COPY", "ADD", "WORKDIR"})


@dataclass
class BuildOptions:
    context: str  # a directory, or "-" for a tar (or a lone Dockerfile) on `stdin`
    dockerfile: str | None = None  # "-" reads the Dockerfile from `stdin`
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    runtime: str = "intermodal"
    stdin: BinaryIO | None = None


@dataclass
class BuildResult:
    record: ImageRecord
    steps: int = 0
    cached: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Stage:
    """The state a stage's instructions update."""

    label: str
    base: ImageRecord | None
    layers: Layers
    history: list[HistoryEntry]  # this build's entries only; assemble puts the base image's first
    config: dict[str, Any]
    key: str
    created: str
    author: str = ""
    args: dict[str, str] = field(default_factory=dict)  # ARGs declared in this stage with a value
    cmd_set: bool = False
    built: list[LayerInfo] = field(default_factory=list)  # layers this build added on top of `base`

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or _DEFAULT_SHELL)

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env") or [] if "=" in e)

    def fork(self, label: str) -> _Stage:
        """A stage FROM this one: same file system, config and history; ARGs do not carry over."""
        return _Stage(label, self.base, self.layers, list(self.history), copy.deepcopy(self.config),
                      self.key, self.created, self.author, built=list(self.built))  # fmt: skip

    def record(self, entry: CacheEntry, key: str, created_by: str) -> None:
        if entry.layer is not None:
            self.layers = self.layers.plus(entry.layer, entry.media_type)
            self.built.append(entry.layer)
        self.history.append(HistoryEntry(created_by, empty_layer=entry.layer is None))
        self.key = key
        self.created = entry.created


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _go_list(items: list[str]) -> str:
    """Go's %q of a []string, as BuildKit writes CMD/ENTRYPOINT into history."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


class Builder:
    def __init__(self, root: Path, opts: BuildOptions, progress: Progress):
        self.root = root
        self.opts = opts
        self.progress = progress
        self.store = ImageStore(root / "images")
        self.snapshots = Snapshotter(root / "snapshots", self.store.content)
        self.cache = BuildCache(root, self.store)
        self.work = root / "build" / secrets.token_hex(8)
        self.stages: dict[int, _Stage] = {}
        self.consumed: set[str] = set()
        self.result_steps = 0
        self.result_cached = 0
        self._ro_mounts: dict[str, str] = {}
        self._stack = ExitStack()

    # -- entry point ------------------------------------------------------------------------------------------

    def build(self) -> BuildResult:
        _reap_stale(self.root / "build")
        self.work.mkdir(parents=True)
        (self.work / "pid").write_text(str(os.getpid()))
        try:
            with self._stack:
                return self._build()
        finally:
            remove_tree(self.work)

    def _build(self) -> BuildResult:
        text, filename, context_dir, index = self._open_context()
        self.context_dir = context_dir
        self.index = index
        df = parse(text, filename)
        self.df = df
        ignore_file = None if self.opts.context == "-" else self._dockerfile_path()
        self.ignore = read_dockerignore(context_dir, ignore_file) if context_dir else []
        self.globals = global_args(df, self.opts.build_args)
        self.consumed.update(n for i in df.meta_args for n, _ in i.arg_defs)
        order = resolve_stages(df, self.opts.build_args, self.opts.target)
        for rs in order:
            self.stages[rs.index] = self._stage(rs)
        final = self.stages[order[-1].index]
        if index is not None:
            index.save()
        config = final.config
        if self.opts.labels:
            config["Labels"] = {**(config.get("Labels") or {}), **self.opts.labels}
        with self.store.lease():
            record = assemble(
                self.store,
                final.built,
                config,
                final.history,
                created=final.created,
                names=self.opts.tags,
                base=final.base,
                layer_media_type=LAYER_MEDIA_TYPE,
                author=final.author,
            )
        unused = sorted(set(self.opts.build_args) - self.consumed - PROXY_ARGS)
        warnings = [f"[Warning] One or more build-args {unused} were not consumed"] if unused else []
        return BuildResult(record, self.result_steps, self.result_cached, warnings)

    # -- context ----------------------------------------------------------------------------------------------

    def _dockerfile_path(self) -> str:
        if self.opts.dockerfile:
            return self.opts.dockerfile
        return os.path.join(self.opts.context, "Dockerfile")

    def _open_context(self) -> tuple[bytes, str, str, ctx.FileIndex | None]:
        """(Dockerfile bytes, its name for errors, context dir, metadata cache or None)."""
        opts = self.opts
        stdin_file: str | None = None
        if "-" in (opts.context, opts.dockerfile):
            if opts.stdin is None:
                raise InvalidArgument("build: '-' reads from standard input, but there is none")
            stdin_file = str(self.work / "stdin")
            with open(stdin_file, "wb") as out:
                shutil.copyfileobj(opts.stdin, out, 1 << 20)
        if opts.context == "-":
            assert stdin_file is not None
            context_dir = str(self.work / "context")
            os.mkdir(context_dir, 0o755)
            archive = open_archive(stdin_file)
            if archive is None:  # `docker build - < Dockerfile`: no context at all
                return Path(stdin_file).read_bytes(), "Dockerfile", context_dir, ctx.FileIndex(None)
            with archive:
                apply_layer(archive, Path(context_dir))
            name = opts.dockerfile or "Dockerfile"
            host = ctx.resolve_in(context_dir, name)
            if host is None or not os.path.isfile(host):
                raise NotFound(f"the context on standard input has no {name}: add it or give -f")
            return Path(host).read_bytes(), name, context_dir, ctx.FileIndex(None)
        if not os.path.isdir(opts.context):
            raise NotFound(f"build context {opts.context!r} is not a directory (give a directory or -)")
        index = ctx.FileIndex(ctx.index_path(self.cache.context, opts.context))
        if opts.dockerfile == "-":
            assert stdin_file is not None
            return Path(stdin_file).read_bytes(), "Dockerfile", opts.context, index
        path = self._dockerfile_path()
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise NotFound(f"cannot read Dockerfile {path}: {e.strerror}") from None
        return data, os.path.basename(path) if not opts.dockerfile else opts.dockerfile, opts.context, index

    # -- stages -----------------------------------------------------------------------------------------------

    def _stage(self, rs: ResolvedStage) -> _Stage:
        df = self.df
        label = rs.name or f"stage-{rs.index}"
        steps = [i for i in rs.stage.instructions if i.keyword in _FILE_STEPS]
        total = len(steps) + 1
        frm = rs.stage.from_instruction
        vid = self.progress.start(
            f"[{self._prefix(rs)}1/{total}] FROM {frm.args[0] if rs.base_stage is not None else (rs.base_image or 'scratch')}"
        )
        try:
            if rs.base_stage is not None:
                st = self.stages[rs.base_stage].fork(label)
            elif rs.base_image is None:
                st = _Stage(label, None, Layers([]), [], {"Env": [f"PATH={DEFAULT_PATH}"]},
                            step_key("", "FROM scratch"), "")  # fmt: skip
            else:
                record = self._image(rs.base_image, frm)
                config = self.store.config(record)
                manifest = self.store.manifest(record)
                st = _Stage(label, record, Layers(list(zip(manifest.layers, config.diff_ids, strict=True))),
                            [], copy.deepcopy(config.config), step_key("", "FROM", record.config),
                            config.created, str(config.raw.get("author", "")))  # fmt: skip
                self.progress.done(vid)
                vid = 0
        except IntermodalError as e:
            self.progress.failed(vid, str(e))
            raise
        if vid:
            self.progress.done(vid)
        triggers = list(st.config.pop("OnBuild", None) or [])
        for n, text in enumerate(triggers):
            trig_df = parse(f"FROM scratch\n{text}", f"{label} ONBUILD trigger {n + 1}")
            for instr in trig_df.stages[0].instructions:
                self._dispatch(st, instr, trig_df, f"{label} ONBUILD")
        number = 1
        for instr in rs.stage.instructions:
            if instr.keyword in _FILE_STEPS:
                number += 1
            self._dispatch(st, instr, df, f"{self._prefix(rs)}{number}/{total}")
        return st

    def _prefix(self, rs: ResolvedStage) -> str:
        return f"{rs.name or f'stage-{rs.index}'} " if len(self.df.stages) > 1 else ""

    def _image(self, name: str, where: Instruction) -> ImageRecord:
        """A base (or COPY --from) image: from the store, pulled if missing or with --pull."""
        try:
            if not self.opts.pull:
                try:
                    return self.store.get(name)
                except NotFound:
                    pass
            from intermodal.engine import distribution

            return distribution.ensure_image(self.root, name, "always" if self.opts.pull else "missing")
        except IntermodalError as e:
            raise self.df.error(where, f"base image {name!r} is not available: {e}") from None

    # -- dispatch ---------------------------------------------------------------------------------------------

    def _expansion_env(self, st: _Stage) -> dict[str, str]:
        """What $VAR means in an instruction: ARGs in effect, ENV winning over an ARG of the same name."""
        return {**st.args, **st.env}

    def _dispatch(self, st: _Stage, instr: Instruction, df: Dockerfile, step: str) -> None:
        try:
            self._dispatch_one(st, instr, df, step)
        except DockerfileError:
            raise
        except IntermodalError as e:
            error = df.error(instr, f"{instr.keyword}: {e}")
            error.exit_code = getattr(e, "exit_code", error.exit_code)
            raise error from None

    def _dispatch_one(self, st: _Stage, instr: Instruction, df: Dockerfile, step: str) -> None:
        kw = instr.keyword
        env = self._expansion_env(st)

        def x(word: str) -> str:
            return df.expand(instr, word, env)

        cfg = st.config
        if kw == "RUN":
            self._run(st, instr, df, env, step)
        elif kw in ("COPY", "ADD"):
            self._copy(st, instr, df, env, step)
        elif kw == "WORKDIR":
            self._workdir(st, instr, x(instr.args[0]), step)
        elif kw == "ENV":
            pairs = [(x(k), x(v)) for k, v in instr.pairs]
            current = list(cfg.get("Env") or [])
            for k, v in pairs:
                current = [e for e in current if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            cfg["Env"] = current
            self._meta(st, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))
        elif kw == "LABEL":
            pairs = [(x(k), x(v)) for k, v in instr.pairs]
            cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(pairs)}
            self._meta(st, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))
        elif kw in ("CMD", "ENTRYPOINT"):
            command = list(instr.args) if instr.json else [*st.shell, *instr.args]
            if kw == "CMD":
                cfg["Cmd"] = command
                st.cmd_set = True
            else:
                cfg["Entrypoint"] = command
                if not st.cmd_set:
                    cfg.pop("Cmd", None)  # BuildKit: ENTRYPOINT resets a CMD inherited from the base
            self._meta(st, f"{kw} {_go_list(command)}")
        elif kw == "EXPOSE":
            ports = [_port(x(a)) for a in instr.args]
            exposed = [p for group in ports for p in group]
            cfg["ExposedPorts"] = {**(cfg.get("ExposedPorts") or {}), **{p: {} for p in exposed}}
            self._meta(st, "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in sorted(exposed)) + "]")
        elif kw == "VOLUME":
            paths = [x(a) for a in instr.args]
            cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{p: {} for p in paths}}
            self._meta(st, "VOLUME [" + " ".join(paths) + "]")
        elif kw == "USER":
            cfg["User"] = x(instr.args[0])
            self._meta(st, f"USER {cfg['User']}")
        elif kw == "STOPSIGNAL":
            sig = x(instr.args[0])
            stop_signal_number(sig)
            cfg["StopSignal"] = sig
            self._meta(st, f"STOPSIGNAL {sig}")
        elif kw == "HEALTHCHECK":
            assert instr.health is not None
            h = instr.health
            check: dict[str, Any] = {"Test": list(h.test)}
            for name, value in (("Interval", h.interval), ("Timeout", h.timeout), ("StartPeriod", h.start_period),
                                ("StartInterval", h.start_interval), ("Retries", h.retries)):  # fmt: skip
                if value:
                    check[name] = value
            cfg["Healthcheck"] = check
            self._meta(st, f"HEALTHCHECK {json.dumps(check, sort_keys=True)}")
        elif kw == "SHELL":
            cfg["Shell"] = list(instr.args)
            self._meta(st, "SHELL [" + " ".join(instr.args) + "]")
        elif kw == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), instr.onbuild_expression]
            self._meta(st, f"ONBUILD {instr.onbuild_expression}")
        elif kw == "MAINTAINER":
            st.author = x(instr.args[0])
            self._meta(st, f"MAINTAINER {st.author}")
        elif kw == "ARG":
            shown = []
            for name, default in instr.arg_defs:
                arg = resolve_arg(name, default, env, self.opts.build_args, self.globals, df.escape)
                self.consumed.add(name)
                if arg is not None:
                    st.args[name] = arg
                    env = self._expansion_env(st)
                shown.append(name if arg is None else f"{name}={arg}")
            # The key has the ARG line as written: a value enters keys only where it is used (RUN's env,
            # expanded words), so changing a build arg invalidates from its first use, as in BuildKit.
            self._meta(st, "ARG " + " ".join(shown), material=instr.original)
        else:  # pragma: no cover - the parser rejects unknown keywords
            raise InvalidArgument(f"unknown instruction {kw}")

    def _lookup(self, key: str) -> CacheEntry | None:
        return None if self.opts.no_cache else self.cache.get(key)

    def _meta(self, st: _Stage, created_by: str, material: str | None = None) -> None:
        key = step_key(st.key, material if material is not None else created_by)
        entry = self._lookup(key)
        if entry is None:
            entry = CacheEntry(None, "", _now())
            self.cache.put(key, entry)
        st.record(entry, key, created_by)

    def _file_step(
        self,
        st: _Stage,
        step: str,
        name: str,
        key: str,
        created_by: str,
        action: Callable[[StepFs, int], None],
    ) -> None:
        """A step that may change files: reuse its cache entry, or run `action` on a fresh overlay and turn
        the upper dir into the layer. A failure leaves no entry and no blob reference behind."""
        vid = self.progress.start(f"[{step}] {name}")
        self.result_steps += 1
        entry = self._lookup(key)
        if entry is not None:
            self.result_cached += 1
            self.progress.cached(vid)
            st.record(entry, key, created_by)
            return
        paths = Paths(self.work / f"step-{secrets.token_hex(4)}")
        fs = StepFs(self.store, self.snapshots, st.layers, paths)
        try:
            with fs:
                action(fs, vid)
            with self.store.lease():
                layer = fs.commit()
                entry = CacheEntry(layer, LAYER_MEDIA_TYPE if layer else "", _now())
                self.cache.put(key, entry)
            if layer is not None:
                fs.adopt(layer)
        except IntermodalError as e:
            self.progress.failed(vid, str(e))
            raise
        finally:
            unmount(paths.rootfs)
            shutil.rmtree(paths.dir, ignore_errors=True)
        self.progress.done(vid)
        st.record(entry, key, created_by)

    # -- WORKDIR ----------------------------------------------------------------------------------------------

    def _workdir(self, st: _Stage, instr: Instruction, path: str, step: str) -> None:
        current = st.config.get("WorkingDir") or "/"
        workdir = posixpath.normpath(posixpath.join(current, path))
        if workdir.startswith("//"):
            workdir = workdir[1:]
        st.config["WorkingDir"] = workdir
        user = st.config.get("User") or ""
        key = step_key(st.key, "WORKDIR", workdir, user)

        def action(fs: StepFs, _vid: int) -> None:
            existed = dir_in_root(fs.rootfs, workdir, create=False) is not None
            host = dir_in_root(fs.rootfs, workdir, create=True)
            if host is None:
                raise InvalidArgument(f"{workdir} exists and is not a directory")
            if not existed and user:  # BuildKit creates the directory as the current USER
                who = resolve_user(fs.rootfs, user)
                os.chown(host, who.uid, who.gid)

        self._file_step(st, step, f"WORKDIR {workdir}", key, f"WORKDIR {workdir}", action)

    # -- RUN --------------------------------------------------------------------------------------------------

    def _run(self, st: _Stage, instr: Instruction, df: Dockerfile, env: dict[str, str], step: str) -> None:
        network = instr.flag("network") or "default"
        if network == "host" or instr.flag("security") == "insecure":
            raise InvalidArgument(
                "--network=host and --security=insecure need an entitlement this builder does not grant"
            )
        args = self._run_args(st, instr, env, df)
        mounts = [
            parse_mount(spec, lambda v: df.expand(instr, v, env)) for spec in instr.flag_values("mount")
        ]
        run_env = {**st.args, **st.env}
        proxies = {k: v for k, v in self.opts.build_args.items() if k in PROXY_ARGS}
        mount_material = []
        for m in mounts:
            if m.type == "secret":  # the secret's id and where it goes, never its value
                mount_material.append(f"secret id={m.id} target={m.target} env={m.env}")
            elif m.type == "bind" and not m.from_:
                mount_material.append(
                    f"bind {m.target} {m.source} {self._context_digest([m.source or '.'], instr)}"
                )
            elif m.type == "bind" or (m.type == "cache" and m.from_):
                mount_material.append(f"{m.type} {m.target} {m.source} {self._from_key(m.from_, instr)}")
            else:
                mount_material.append(f"{m.type} {m.target} id={m.id} {m.mode} {m.uid} {m.gid} {m.size}")
        material = json.dumps({"args": args, "env": sorted(run_env.items()), "mounts": mount_material,
                               "network": network, "user": st.config.get("User") or "",
                               "workdir": st.config.get("WorkingDir") or "/"})  # fmt: skip
        key = step_key(st.key, "RUN", material)
        shown_args = [f"{k}={v}" for k, v in st.args.items() if k not in PROXY_ARGS]
        prefix = f"|{len(shown_args)} {' '.join(shown_args)} " if shown_args else ""
        created_by = f"RUN {prefix}{' '.join(args)} # buildkit"
        workdir = st.config.get("WorkingDir") or "/"

        def action(fs: StepFs, vid: int) -> None:
            with ExitStack() as stack:
                run_mounts = prepare_mounts(
                    mounts, workdir=workdir, cache=self.cache, secrets_by_id=self.opts.secrets,
                    bind_root=lambda m: self._bind_root(m, instr), scratch=fs.paths.dir, stack=stack,
                )  # fmt: skip
                run_step(
                    fs, args=args, env={**run_env, **proxies}, user=st.config.get("User") or "",
                    workdir=workdir, mounts=run_mounts, runtime_name=self.opts.runtime, state_root=self.root,
                    output=lambda data: self.progress.output(vid, data),
                )  # fmt: skip

        self._file_step(st, step, "RUN " + " ".join(instr.args), key, created_by, action)

    def _run_args(self, st: _Stage, instr: Instruction, env: Mapping[str, str], df: Dockerfile) -> list[str]:
        """The process to run: exec form as is; shell form through SHELL; heredocs as BuildKit runs them."""
        if instr.json:
            return list(instr.args)
        command = instr.args[0]
        docs = instr.heredocs
        if not docs:
            return [*st.shell, command]
        if len(docs) == 1 and command.strip().startswith("<<") and len(command.split()) == 1:
            # `RUN <<EOF`: the body is the script (expanded here unless the delimiter was quoted).
            body = expand_heredoc(docs[0].data, env, df.escape) if docs[0].expand else docs[0].data
            return [*st.shell, body]
        # `RUN cat <<EOF …`: the shell gets the command with its heredoc bodies and does the rest.
        return [*st.shell, command + "\n" + "".join(f"{d.content}{d.name}\n" for d in docs)]

    # -- COPY / ADD -------------------------------------------------------------------------------------------

    def _stage_index(self, ref: str) -> int | None:
        if ref.isdigit():
            return int(ref)
        return next((s.index for s in self.df.stages if s.name and s.name == ref.lower()), None)

    def _from_key(self, ref: str, where: Instruction) -> str:
        """What a --from source contributes to a key: the stage's final key or the image ID."""
        index = self._stage_index(ref)
        if index is not None:
            return self.stages[index].key
        return self._image(ref, where).config

    def _from_root(self, ref: str, where: Instruction) -> str:
        """A --from stage or image mounted read-only (once per build)."""
        if ref not in self._ro_mounts:
            index = self._stage_index(ref)
            if index is not None:
                layers = self.stages[index].layers
            else:
                record = self._image(ref, where)
                config, manifest = self.store.config(record), self.store.manifest(record)
                layers = Layers(list(zip(manifest.layers, config.diff_ids, strict=True)))
            mountpoint = self.work / f"from-{len(self._ro_mounts)}"
            self._ro_mounts[ref] = self._stack.enter_context(
                mount_read_only(self.snapshots, layers, mountpoint)
            )
        return self._ro_mounts[ref]

    def _bind_root(self, m: Any, where: Instruction) -> str:
        return self._from_root(m.from_, where) if m.from_ else self.context_dir

    def _fail(self, where: Instruction) -> Callable[[str], Exception]:
        return lambda reason: self.df.error(where, reason)

    def _context_digest(self, sources: list[str], where: Instruction) -> str:
        matcher = Matcher(self.ignore)
        items = []
        for n, source in enumerate(sources):
            for host, rel in ctx.select(self.context_dir, source, matcher, self._fail(where)):
                for e in ctx.entries(self.context_dir, host, rel, matcher, contents=True):
                    items.append((e, f"{n}:{rel}:{e.dest}"))
        return ctx.content_digest(items, self.index)

    def _copy(self, st: _Stage, instr: Instruction, df: Dockerfile, env: dict[str, str], step: str) -> None:
        kw = instr.keyword
        add = kw == "ADD"

        def x(word: str) -> str:
            return df.expand(instr, word, env)

        sources = [x(s) for s in instr.sources]
        dest = x(instr.dest)
        from_ = df.expand(instr, instr.flag("from") or "", self.globals)
        chown = x(instr.flag("chown") or "")
        chmod_text = x(instr.flag("chmod") or "")
        try:
            chmod = int(chmod_text, 8) if chmod_text else None
        except ValueError:
            raise df.error(instr, f"invalid --chmod={chmod_text}: give an octal mode like 0755") from None
        excludes = [x(e) for e in instr.flag_values("exclude")]
        parents = instr.flag_bool("parents")
        scratch = self.work / f"inline-{secrets.token_hex(4)}"
        inline: list[ctx.Entry] = []
        for doc in instr.inline_sources:
            scratch.mkdir(exist_ok=True)
            path = scratch / doc.name
            path.write_text(expand_heredoc(doc.data, env, df.escape) if doc.expand else doc.data)
            os.chmod(path, 0o644)
            inline.append(ctx.Entry(str(path), doc.name, "", os.lstat(path)))
        urls = [s for s in sources if add and _is_url(s)]
        for url in urls:
            scratch.mkdir(exist_ok=True)
            inline.append(_download(url, scratch, self._fail(instr)))
        local = [s for s in sources if s not in urls]
        shown_flags = "".join(
            f"--{f}={v} " for f, v in (("from", from_), ("chown", chown), ("chmod", chmod_text)) if v
        )
        text = f"{kw} {shown_flags}{' '.join(sources + [f'<<{d.name}' for d in instr.inline_sources])} {dest}"
        material: list[str] = [text, json.dumps(excludes), str(parents), st.config.get("WorkingDir") or "/"]
        material.append(ctx.content_digest([(e, f"inline:{e.rel}") for e in inline], None))
        selected: list[tuple[str, str, list[ctx.Entry]]] | None = None
        if from_:
            material.append(self._from_key(from_, instr))
        elif local:
            matcher = Matcher([*self.ignore, *excludes])
            selected = []
            items = []
            for source in local:
                for host, rel in ctx.select(self.context_dir, source, matcher, self._fail(instr)):
                    found = list(ctx.entries(self.context_dir, host, rel, matcher, contents=True))
                    selected.append((host, rel, found))
                    items += [(e, f"{rel}:{e.dest}") for e in found]
            material.append(ctx.content_digest(items, self.index))
        key = step_key(st.key, kw, *material)
        workdir = st.config.get("WorkingDir") or "/"
        multiple = len(sources) + len(inline) > 1 or any(c in s for s in local for c in "*?[")

        def action(fs: StepFs, _vid: int) -> None:
            chosen = selected
            if from_:
                root = self._from_root(from_, instr)
                matcher = Matcher(excludes)
                chosen = [
                    (host, rel, list(ctx.entries(root, host, rel, matcher, contents=True)))
                    for source in local
                    for host, rel in ctx.select(root, source, matcher, self._fail(instr))
                ]
            chosen = (chosen or []) + [(e.path, e.rel, [e]) for e in inline]
            uid = gid = 0
            if chown:
                who = resolve_user(fs.rootfs, chown)
                uid, gid = who.uid, who.gid
            _place(
                fs.rootfs, dest, workdir, chosen, multiple or len(chosen) > 1, parents, add, uid, gid, chmod
            )

        self._file_step(st, step, text, key, f"{text} # buildkit", action)


def _place(
    rootfs: str,
    dest: str,
    workdir: str,
    chosen: list[tuple[str, str, list[ctx.Entry]]],
    multiple: bool,
    parents: bool,
    add: bool,
    uid: int,
    gid: int,
    chmod: int | None,
) -> None:
    """Docker's destination rules: a directory source copies its contents; a file goes to `dest` or, when
    `dest` ends with / or is a directory, to dest/<name>; several sources need a directory destination."""
    dest_abs = posixpath.normpath(posixpath.join(workdir, dest))
    dest_is_dir = dest.endswith("/") or dest in (".", "") or dest.endswith("/.")
    dest_is_dir = dest_is_dir or dir_in_root(rootfs, dest_abs, create=False) is not None
    if multiple and not dest_is_dir:
        raise InvalidArgument(
            f"when using COPY with more than one source file, the destination must be a directory and end with a /: {dest}"
        )
    placed: list[Placed] = []
    archives: list[str] = []
    stamp = int(dt.datetime.now(dt.UTC).timestamp())
    for host, rel, found in chosen:
        top_is_dir = os.path.isdir(host) and not os.path.islink(host)
        if top_is_dir:
            base = posixpath.join(dest_abs, rel) if parents else dest_abs
            if dir_in_root(rootfs, base, create=False) is None:
                placed.append(Placed(base.lstrip("/"), None, 0o755, stamp))
            placed += [Placed(posixpath.join(base, e.dest).lstrip("/"), e) for e in found]
            continue
        if add and open_archive(host) is not None:
            archives.append(host)
            continue
        if parents:
            name = posixpath.join(dest_abs, rel)
        elif dest_is_dir:
            name = posixpath.join(dest_abs, posixpath.basename(rel or host))
        else:
            name = dest_abs
        placed += [Placed(name.lstrip("/"), e) for e in found]
    if placed:
        copy_in(rootfs, placed, uid, gid, chmod)
    for host in archives:
        target = dir_in_root(rootfs, dest_abs, create=True)
        if target is None:
            raise InvalidArgument(f"cannot extract into {dest_abs}: it is not a directory")
        stream = open_archive(host)
        assert stream is not None
        with stream:
            apply_layer(stream, Path(target))


def _port(spec: str) -> list[str]:
    """EXPOSE's port[-end][/proto] as Docker's ExposedPorts keys."""
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    start, _, end = port.partition("-")
    if not start.isdigit() or (end and not end.isdigit()) or proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid port {spec!r}: use PORT[-END][/tcp|udp|sctp]")
    last = int(end) if end else int(start)
    return [f"{p}/{proto}" for p in range(int(start), last + 1)]


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _download(url: str, scratch: Path, fail: Callable[[str], Exception]) -> ctx.Entry:
    """ADD <url>: fetched at every build (the content is part of the key), mode 0600 as in Docker."""
    import httpx

    name = posixpath.basename(url.split("?", 1)[0].rstrip("/")) or "download"
    path = scratch / name
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=30) as response:
            response.raise_for_status()
            with open(path, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
    except httpx.HTTPError as e:
        raise fail(f"ADD {url}: cannot download it ({e}); this builder may be offline") from None
    os.chmod(path, 0o600)
    return ctx.Entry(str(path), name, "", os.lstat(path))


def _reap_stale(build_root: Path) -> None:
    """Work dirs of builds that died (killed, crashed): unmount and remove them."""
    if not build_root.is_dir():
        return
    for work in build_root.iterdir():
        try:
            pid = int((work / "pid").read_text())
            os.kill(pid, 0)
            continue
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue
        remove_tree(work)


def build(root: Path, opts: BuildOptions, progress: Progress) -> BuildResult:
    """Build the Dockerfile in `opts`; the image is committed (and tagged) only if every step succeeded."""
    return Builder(root, opts, progress).build()
