import pytest

from intermodal.errors import InvalidArgument
from intermodal.image import reference
from intermodal.image.digest import Digest

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("user/app", "docker.io/user/app:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:x", "docker.io/library/busybox:x"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:v1", "localhost:5000/app:v1"),
        ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"),
        ("quay.io/org/app", "quay.io/org/app:latest"),
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
        (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}"),
        (f"busybox:1@sha256:{HEX}", f"docker.io/library/busybox:1@sha256:{HEX}"),
        ("my-app_x/sub__dir.y:Tag_1.0-rc", "docker.io/my-app_x/sub__dir.y:Tag_1.0-rc"),
    ],
)
def test_normalisation_matches_docker(text: str, expected: str) -> None:
    assert str(reference.parse(text)) == expected


def test_familiar_names_are_what_docker_prints() -> None:
    assert reference.parse("docker.io/library/busybox").familiar == "busybox:latest"
    assert reference.parse("user/app:1").familiar == "user/app:1"
    assert reference.parse("localhost:5000/app").familiar == "localhost:5000/app:latest"


def test_digest_reference_keeps_digest() -> None:
    ref = reference.parse(f"busybox@sha256:{HEX}")
    assert ref.tag is None
    assert ref.digest == Digest(HEX)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("Busybox", "lowercase"),
        ("busybox:", "expected"),
        ("busy box", "expected"),
        ("busybox@sha256:abc", "expected"),
        ("-leading", "expected"),
        ("a" * 300, "longer than"),
        ("busybox:" + "t" * 200, "expected"),
    ],
)
def test_invalid_references_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        reference.parse(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_digest_parse_rejects_other_algorithms() -> None:
    with pytest.raises(InvalidArgument):
        Digest.parse("md5:" + "a" * 32)
    assert str(Digest.parse(f"sha256:{HEX}")) == f"sha256:{HEX}"
    assert Digest(HEX).short == HEX[:12]
