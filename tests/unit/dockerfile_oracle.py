"""Compare our line parser with BuildKit's, as wrapped by the PyPI package ``dockerfile``.

The wrapper (BuildKit v0.12.5's parser) reports, per instruction: the keyword as written, ONBUILD's
trigger keyword, JSON form, the line range, the raw flags and the argument words. For an ONBUILD it
reports the *outer* flags but the trigger's arguments, and attaches heredocs (and their text in
``original``) only to non-ONBUILD instructions; the projection below reproduces those quirks.
"""

from __future__ import annotations

from typing import Any

import dockerfile as oracle

from intermodal.build.dockerfile import Node, parse_ast


def project_ours(text: str) -> list[tuple[Any, ...]]:
    return [_project_node(n) for n in parse_ast(text).nodes]


def _project_node(n: Node) -> tuple[Any, ...]:
    inner = n.trigger or n
    original = n.original
    heredocs: tuple[tuple[str, int, str], ...] = ()
    if n.trigger is None and n.heredocs:
        original += "\n" + "".join(h.content + h.name + "\n" for h in n.heredocs)
        heredocs = tuple((h.name, h.fd, h.content) for h in n.heredocs)
    return (
        n.keyword.lower(),
        n.trigger.keyword.lower() if n.trigger else None,
        inner.json,
        original,
        n.start_line,
        n.end_line,
        n.flags,
        inner.args if (n.trigger or n.keyword.lower() != "onbuild") else (),
        heredocs,
    )


def project_oracle(text: str) -> list[tuple[Any, ...]]:
    return [
        (
            c.cmd.lower(),
            c.sub_cmd.lower() if c.sub_cmd else None,
            c.json,
            c.original,
            c.start_line,
            c.end_line,
            tuple(c.flags),
            tuple(c.value),
            tuple((h.name, h.file_descriptor, h.content) for h in c.heredocs),
        )
        for c in oracle.parse_string(text)
    ]


def oracle_error(text: str) -> str | None:
    try:
        oracle.parse_string(text)
    except oracle.GoParseError as e:
        return str(e)
    return None
