"""The instruction layer, stage resolution, ARG scoping and located errors (hand-written expectations)."""

from __future__ import annotations

import pytest

from intermodal.build.dockerfile import (
    DockerfileError,
    HealthCheck,
    Mount,
    global_args,
    parse,
    parse_ast,
    parse_duration,
    parse_mount,
    resolve_arg,
    resolve_stages,
)
from intermodal.build.expand import expand
from intermodal.errors import InvalidArgument


def test_stages_flags_and_accessors() -> None:
    df = parse(
        "ARG BASE=alpine\n"
        "FROM --platform=$BUILDPLATFORM ${BASE} AS Build\n"
        "COPY --from=0 --chown=1:1 --link a b /dst/\n"
        'ENV A=1 B="two words"\n'
        "ARG X Y=2\n"
        "FROM scratch\n"
        "COPY --from=build /out /\n",
        "Dockerfile.app",
    )
    assert [i.keyword for i in df.meta_args] == ["ARG"]
    build, final = df.stages
    assert (build.name, build.base, build.platform, build.line) == ("build", "${BASE}", "$BUILDPLATFORM", 2)
    copy, env, arg = build.instructions
    assert copy.flag("from") == "0" and copy.flag("chown") == "1:1" and copy.flag_bool("link")
    assert copy.sources == ("a", "b") and copy.dest == "/dst/"
    assert env.pairs == (("A", "1"), ("B", '"two words"'))
    assert arg.arg_defs == (("X", None), ("Y", "2"))
    assert final.index == 1 and final.name == ""


def test_heredoc_flags_the_oracle_does_not_report() -> None:
    ast = parse_ast(
        'FROM a\nRUN <<EOF <<-"Q" cat\n$A\nEOF\n\tb\n\tQ\nCOPY <<E"O"F /f\nx\nEOF\n',
    )
    run, copy = ast.nodes[1], ast.nodes[2]
    first, second = run.heredocs
    assert (first.name, first.expand, first.chomp, first.data) == ("EOF", True, False, "$A\n")
    assert (second.name, second.expand, second.chomp, second.content, second.data) == (
        "Q",
        False,
        True,
        "\tb\n",
        "b\n",
    )
    assert copy.heredocs[0].expand is False  # any quoted part of the delimiter disables expansion


def test_copy_heredoc_sources_and_onbuild_trigger() -> None:
    df = parse(
        "FROM a\nCOPY <<one.txt src <<two.txt /d/\n1\none.txt\n2\ntwo.txt\nONBUILD RUN <<EOF\nhi\nEOF\n"
    )
    copy, onbuild = df.stages[0].instructions
    assert copy.sources == ("src",)
    assert [h.name for h in copy.inline_sources] == ["one.txt", "two.txt"]
    assert onbuild.trigger is not None and onbuild.trigger.keyword == "RUN"
    assert onbuild.trigger.heredocs[0].content == "hi\n"
    assert onbuild.onbuild_expression == "RUN <<EOF\nhi\nEOF"


def test_heredoc_found_after_new_expansion_forms() -> None:
    # BuildKit >= 0.13 lexes ${V%p} and ${V/p/r}; the v0.12.5 oracle does not and misses this heredoc.
    ast = parse_ast("FROM a\nRUN echo ${V%.*} ${V/a/b} <<EOF\nbody\nEOF\n")
    assert ast.nodes[1].heredocs[0].content == "body\n"


def test_check_directive_is_a_directive() -> None:
    # Newer BuildKit knows `# check=`; the v0.12.5 oracle would stop reading directives there.
    df = parse("# check=skip=JSONArgsRecommended;error=true\n# escape=`\nFROM a\nRUN a `\n  b\n")
    assert df.escape == "`"
    assert df.checks == {"skip": "JSONArgsRecommended", "error": "true"}
    assert df.stages[0].instructions[0].args == ("a   b",)


def test_run_mounts_parsed() -> None:
    df = parse(
        "FROM a\nRUN --mount=type=cache,target=/c,sharing=locked,id=x,uid=1000,mode=0755 "
        "--mount=type=secret,id=tok,required --mount=type=bind,from=build,src=/o,target=/i,rw true\n"
    )
    cache, secret, bind = df.stages[0].instructions[0].mounts
    assert cache == Mount(
        type="cache", target="/c", sharing="locked", id="x", uid=1000, mode=0o755, readonly=False
    )
    assert secret.type == "secret" and secret.id == "tok" and secret.required and secret.readonly
    assert bind.from_ == "build" and bind.source == "/o" and not bind.readonly


def test_mount_expansion_by_the_executor() -> None:
    env = {"DIR": "/x", "UID": "7"}
    m = parse_mount("type=cache,target=$DIR,uid=$UID", lambda v: expand(v, env))
    assert (m.target, m.uid) == ("/x", 7)
    assert parse_mount("type=cache,target=$DIR,uid=$UID").uid is None  # checked later, once expanded


@pytest.mark.parametrize(
    "spec",
    [
        "type=nope,target=/x",
        "type=bind,target=/x,sharing=locked",
        "type=cache,target=/x,sharing=sometimes",
        "type=secret,id=a,from=x",
        "type=bind,target=/x,mode=0700",
        "type=cache,target=/x,uid=abc",
        "type=cache",
        "type=cache,target=/x,bogus=1",
        "type=cache,target=/x,flag",
        'type=cache,"target=/x',
        "type=bind,target=/x,required",
        "from=$STAGE,target=/x",
    ],
)
def test_bad_mounts(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_mount(spec)


def test_healthcheck_config() -> None:
    df = parse(
        "FROM a\nHEALTHCHECK --interval=1m30s --timeout=5s --start-period=1s --start-interval=500ms "
        '--retries=3 CMD curl -f http://x/\nHEALTHCHECK NONE\nHEALTHCHECK CMD ["a", "b"]\n'
    )
    shell, none, exec_ = (i.health for i in df.stages[0].instructions)
    assert shell == HealthCheck(
        ("CMD-SHELL", "curl -f http://x/"), 90 * 10**9, 5 * 10**9, 10**9, 500 * 10**6, 3
    )
    assert none == HealthCheck(("NONE",))
    assert exec_ is not None and exec_.test == ("CMD", "a", "b")


def test_parse_duration() -> None:
    assert parse_duration("1h2m3.5s") == (3600 + 120 + 3.5) * 10**9
    assert parse_duration("0") == 0
    for bad in ("", "5", "1x", "s", "1.5.5s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


BAD = [
    ("FROM a\nRUN ok\nRUNN x\n", 3, "unknown instruction: RUNN"),
    ("FROM a\nRUN <<EOF\nno end\n", 2, "unterminated heredoc"),
    ("FROM a\nRUN --bogus=1 x\n", 2, "unknown flag: --bogus"),
    ("FROM a\nCOPY --from x y\n", 2, "missing a value on flag: --from"),
    ("FROM a\nCOPY --link=maybe x y\n", 2, "expecting boolean value"),
    ("FROM a\nCOPY --from=a --from=b x y\n", 2, "duplicate flag"),
    ("FROM a\nENV --x=1 A=b\n", 2, "unknown flag: --x"),
    ("", 1, "file with no instructions"),
    ("# only a comment\n", 1, "file with no instructions"),
    ("ARG A\n", 1, "no FROM"),
    ("RUN x\nFROM a\n", 1, "RUN before the first FROM"),
    ("FROM a b\n", 1, "FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", 1, "invalid name for build stage"),
    ("FROM a AS x\nFROM b AS X\n", 2, "duplicate stage name"),
    ("FROM a\nCOPY onlyone\n", 2, "COPY requires at least two arguments"),
    ("FROM a\nCOPY x <<EOF\nEOF\n", 2, "cannot accept a heredoc as a destination"),
    ("FROM a\nWORKDIR\n", 2, "WORKDIR requires exactly one argument"),
    ("FROM a\nUSER\n", 2, "USER requires exactly one argument"),
    ("FROM a\nEXPOSE\n", 2, "EXPOSE requires at least one argument"),
    ("FROM a\nENV\n", 2, "ENV requires at least one argument"),
    ("FROM a\nENV a\n", 2, "ENV must have two arguments"),
    ("FROM a\nLABEL a=b c\n", 2, "can't find ="),
    ("FROM a\nARG\n", 2, "ARG requires at least one argument"),
    ("FROM a\nARG =x\n", 2, "ARG names can not be blank"),
    ("FROM a\nRUN\n", 2, "RUN requires at least one argument"),
    ("FROM a\nSHELL /bin/sh -c\n", 2, "SHELL requires the arguments to be in JSON form"),
    ('FROM a\nVOLUME [""]\n', 2, "can not be an empty string"),
    ("FROM a\nONBUILD\n", 2, "ONBUILD requires at least one argument"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", 2, "Chaining ONBUILD"),
    ("FROM a\nONBUILD FROM b\n", 2, "isn't allowed as an ONBUILD trigger"),
    ("FROM a\nHEALTHCHECK NONE x\n", 2, "HEALTHCHECK NONE takes no arguments"),
    ("FROM a\nHEALTHCHECK CMD\n", 2, "Missing command after HEALTHCHECK CMD"),
    ("FROM a\nHEALTHCHECK WHAT x\n", 2, "Unknown type"),
    ("FROM a\nHEALTHCHECK --interval=soon CMD x\n", 2, "invalid duration for --interval"),
    ("FROM a\nHEALTHCHECK --timeout=1us CMD x\n", 2, "cannot be less than 1ms"),
    ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", 2, "--retries cannot be negative"),
    ("FROM a\nRUN --network=bridge x\n", 2, "unsupported network mode"),
    ("FROM a\nRUN --mount=type=cache x\n", 2, "cache mount requires a target"),
    ('FROM a\nCMD ["a", 1]\n', 2, "arrays must be comprised of strings only"),
    ("# escape=x\nFROM a\n", 1, "invalid escape token"),
    ("# syntax=a\n# syntax=b\nFROM a\n", 2, "only one syntax parser directive"),
    ("FROM a\nRUN \\\n  x \\\n  y\nBAD z\n", 5, "unknown instruction: BAD"),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD, ids=[b[2] for b in BAD])
def test_errors_name_file_and_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text, "ctx/Dockerfile.dev")
    msg = str(info.value)
    assert msg.startswith(f"ctx/Dockerfile.dev:{line}: "), msg
    assert reason in msg and "\n" not in msg
    assert isinstance(info.value, InvalidArgument)


def test_invalid_utf8_is_located() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: not valid UTF-8"):
        parse(b"FROM a\nRUN \xff\n")


def test_empty_continuation_lines_warn() -> None:
    df = parse("FROM a\nRUN a \\\n\n  b\n")
    assert df.warnings and "Dockerfile:2" in df.warnings[0]


# --- ARG scoping and stage resolution --------------------------------------------------------------------

MULTI = """\
ARG BASE=alpine
ARG TAG=3.19
ARG FULL=$BASE:$TAG
FROM $FULL AS deps
RUN echo deps
FROM deps AS build
COPY --from=tools /bin/x /x
FROM busybox AS tools
FROM scratch AS unused
FROM --platform=$TARGETPLATFORM ${BASE} AS final
COPY --from=build /out /out
RUN --mount=type=bind,from=tools,target=/t true
"""


def test_global_args_and_build_arg_override() -> None:
    df = parse(MULTI)
    scope = global_args(df)
    assert scope["FULL"] == "alpine:3.19" and scope["TARGETARCH"] == "amd64"
    scope = global_args(df, {"TAG": "edge", "UNDECLARED": "x"})
    assert scope["FULL"] == "alpine:edge" and "UNDECLARED" not in scope


def test_resolve_stages_for_target_in_dependency_order() -> None:
    df = parse(MULTI)
    stages = resolve_stages(df)
    assert [s.name for s in stages] == ["deps", "tools", "build", "final"]
    deps, _, build, final = stages
    assert deps.base_image == "alpine:3.19" and deps.base_stage is None
    assert build.base_stage == 0 and build.base_image is None and build.deps == (0, 2)
    assert final.platform == "linux/amd64" and set(final.deps) == {1, 2}
    assert [s.name for s in resolve_stages(df, {"BASE": "debian"}, target="DEPS")] == ["deps"]
    assert resolve_stages(df, target="unused")[0].base_image is None  # scratch


def test_from_names_only_earlier_stages() -> None:
    df = parse("FROM later AS first\nFROM alpine AS later\n")
    assert resolve_stages(df, target="first")[0].base_image == "later"


def test_unknown_target_and_cycles() -> None:
    df = parse(MULTI)
    with pytest.raises(InvalidArgument, match="target stage 'nope' could not be found"):
        resolve_stages(df, target="nope")
    cyclic = parse("FROM a AS x\nCOPY --from=y / /\nFROM a AS y\nCOPY --from=x / /\n")
    with pytest.raises(
        DockerfileError, match="circular dependency detected on stage: .*x -> y -> x|y -> x -> y"
    ):
        resolve_stages(cyclic)
    selfref = parse("FROM a AS x\nCOPY --from=x / /\n")
    with pytest.raises(DockerfileError, match="circular dependency"):
        resolve_stages(selfref)
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: --from=5: invalid stage index"):
        resolve_stages(parse("FROM a\nCOPY --from=5 / /\n"))


def test_blank_base_and_bad_expansion_are_located() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: base name \(\$NOTHING\) should not be blank"):
        resolve_stages(parse("ARG NOTHING\nFROM $NOTHING\n"))
    with pytest.raises(DockerfileError, match=r"^Dockerfile:1: .*IMAGE: required"):
        resolve_stages(parse("FROM ${IMAGE:?required}\n"))


def test_copy_from_image_is_not_a_stage() -> None:
    df = parse("FROM a\nCOPY --from=nginx:latest /x /x\n")
    assert resolve_stages(df)[0].deps == ()


def test_arg_inside_stage() -> None:
    globals_ = {"VERSION": "1.0", "TARGETARCH": "amd64"}
    # a bare ARG inherits the global value; a build arg wins; a default is expanded with the step's env
    assert resolve_arg("VERSION", None, {}, {}, globals_) == "1.0"
    assert resolve_arg("VERSION", None, {}, {"VERSION": "2"}, globals_) == "2"
    assert resolve_arg("VERSION", "dev-$X", {"X": "y"}, {}, globals_) == "dev-y"
    assert resolve_arg("VERSION", "d", {}, {"VERSION": "cli"}, globals_) == "cli"
    assert resolve_arg("UNSET", None, {}, {}, globals_) is None
