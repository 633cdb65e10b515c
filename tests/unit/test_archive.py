"""docker-archive and OCI layout/archive save and load, against a real store: round trips, determinism,
the formats other tools expect (checked against the OCI JSON schemas), legacy Docker archives, and hostile or
corrupt input."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
import zstandard

from intermodal.errors import CorruptContent, InvalidArgument
from intermodal.image import archive
from intermodal.image import mediatypes as mt
from intermodal.image.digest import Digest
from intermodal.image.models import Descriptor, Manifest, canonical_json
from intermodal.image.store import ImageStore

SCHEMAS = Path("/usr/share/gocode/src/github.com/opencontainers/image-spec/schema")


# -- helpers ------------------------------------------------------------------------------------------------


def save_bytes(image: Any, items: list | None = None, fmt: str = "docker") -> bytes:
    out = io.BytesIO()
    archive.save(image.store, items or [(image.record, ["test/image:1"])], out, format=fmt)
    return out.getvalue()


def members(data: bytes) -> dict[str, bytes]:
    """The regular members of a tar, by name (to tamper with an archive and write it again)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def tar_of(files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A tar of `files`, then `extra` entries without data (links, devices, directories)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return out.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def blob(digest: Digest | str) -> str:
    return f"blobs/sha256/{str(digest).removeprefix('sha256:')}"


def oci_members(
    config: bytes, layers: list[bytes], annotations: dict[str, str] | None = None
) -> dict[str, bytes]:
    """A hand-made OCI archive: `layers` (compression sniffed for the media type), `config`, a manifest."""
    types = {b"\x1f\x8b": mt.OCI_LAYER_GZIP, b"\x28\xb5": mt.OCI_LAYER_ZSTD}
    manifest = Manifest(
        Descriptor(mt.OCI_CONFIG, Digest.of_bytes(config), len(config)),
        tuple(
            Descriptor(types.get(layer[:2], mt.OCI_LAYER), Digest.of_bytes(layer), len(layer))
            for layer in layers
        ),
    ).to_bytes()
    descriptor = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(Digest.of_bytes(manifest)),
        "size": len(manifest),
    }
    if annotations:
        descriptor["annotations"] = annotations
    files = {blob(Digest.of_bytes(b)): b for b in (config, manifest, *layers)}
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = canonical_json({"schemaVersion": 2, "manifests": [descriptor]})
    return files


def config_for(diff_ids: list[Digest]) -> bytes:
    return canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
        }
    )


def uncompressed_layer(image: Any) -> bytes:
    return gzip.decompress(image.store.content.read_bytes(image.layer_digest))


@pytest.fixture
def other(tmp_path: Path) -> ImageStore:
    """A second, empty store to load into."""
    return ImageStore(tmp_path / "other")


def load(store: ImageStore, data: bytes) -> list:
    return archive.load(store, io.BytesIO(data))


def files_outside(root: Path, inside: Path) -> set[Path]:
    return {p for p in root.rglob("*") if inside not in p.parents and p != inside}


# -- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker", "oci-archive"])
def test_round_trip_keeps_manifest_config_names_and_sizes(
    test_image: Any, other: ImageStore, fmt: str
) -> None:
    [record] = load(other, save_bytes(test_image, fmt=fmt))
    original = test_image.record
    assert (record.manifest, record.config, record.names) == (
        original.manifest,
        original.config,
        ["docker.io/test/image:1"],
    )
    assert record.size == original.size == len(uncompressed_layer(test_image))
    assert record.layer_sizes == [original.size]
    assert other.get("test/image:1").manifest == original.manifest


def test_oci_dir_round_trip(test_image: Any, other: ImageStore, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    archive.save(test_image.store, [(test_image.record, ["test/image:1"])], layout, format="oci-dir")
    assert (layout / "oci-layout").is_file()
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        tar.add(layout, arcname=".")  # `./index.json` and so on, as `tar -C layout -c .` writes them
    [record] = load(other, packed.getvalue())
    assert (record.manifest, record.config, record.names) == (
        test_image.record.manifest,
        test_image.record.config,
        ["docker.io/test/image:1"],
    )


@pytest.mark.parametrize("fmt", ["docker", "oci-archive"])
def test_saves_are_deterministic_and_survive_a_reload(test_image: Any, other: ImageStore, fmt: str) -> None:
    first = save_bytes(test_image, fmt=fmt)
    assert save_bytes(test_image, fmt=fmt) == first
    [record] = load(other, first)
    again = io.BytesIO()
    archive.save(other, [(record, ["test/image:1"])], again, format=fmt)
    assert again.getvalue() == first


def test_docker_archive_layout_and_metadata(test_image: Any) -> None:
    data = save_bytes(test_image)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
    names = [i.name for i in infos]
    assert names == sorted(names)
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names)
    assert all(i.mtime == 0 and i.uid == i.gid == 0 and i.uname == i.gname == "" for i in infos)
    files = members(data)
    record = test_image.record
    manifest = Manifest.parse(files[blob(record.manifest)])
    assert json.loads(files["manifest.json"]) == [
        {
            "Config": blob(record.config),
            "RepoTags": ["test/image:1"],
            "Layers": [blob(test_image.layer_digest)],
        }
    ]
    assert json.loads(files["repositories"]) == {"test/image": {"1": test_image.layer_digest.hex}}
    [descriptor] = json.loads(files["index.json"])["manifests"]
    assert descriptor == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": record.manifest,
        "size": len(files[blob(record.manifest)]),
        "annotations": {
            "io.containerd.image.name": "docker.io/test/image:1",
            "org.opencontainers.image.ref.name": "1",
        },
    }
    assert files[blob(record.config)] == test_image.config_bytes
    assert [layer.digest for layer in manifest.layers] == [test_image.layer_digest]


def test_multi_image_save_loads_every_image_and_name(
    test_image: Any, make_image: Any, other: ImageStore
) -> None:
    second = make_image(["other/app:2"], {"app/run": b"run\n"})
    items = [(test_image.record, ["test/image:1", "test/image:latest"]), (second.record, ["other/app:2"])]
    data = save_bytes(test_image, items)
    assert len(json.loads(members(data)["index.json"])["manifests"]) == 3
    records = {r.config: r for r in load(other, data)}
    assert records[test_image.record.config].names == [
        "docker.io/test/image:1",
        "docker.io/test/image:latest",
    ]
    assert records[second.record.config].names == ["docker.io/other/app:2"]
    assert records[second.record.config].manifest == second.record.manifest


@pytest.mark.parametrize("fmt", ["docker", "oci-archive"])
def test_save_by_id_loads_untagged(test_image: Any, other: ImageStore, fmt: str) -> None:
    data = save_bytes(test_image, [(test_image.record, [])], fmt)
    if fmt == "docker":
        assert json.loads(members(data)["manifest.json"])[0]["RepoTags"] is None
        assert "repositories" not in members(data)
    [record] = load(other, data)
    assert (record.config, record.names) == (test_image.record.config, [])


@pytest.mark.parametrize("compress", [gzip.compress, zstandard.ZstdCompressor().compress])
def test_loads_compressed_archive_streams(test_image: Any, other: ImageStore, compress: Any) -> None:
    [record] = load(other, compress(save_bytes(test_image)))
    assert record.manifest == test_image.record.manifest


def test_oci_dir_adds_to_an_existing_layout(test_image: Any, make_image: Any, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    second = make_image(["other/app:2"], {"app/run": b"run\n"})
    archive.save(test_image.store, [(test_image.record, ["test/image:1"])], layout, format="oci-dir")
    archive.save(test_image.store, [(second.record, ["other/app:2"])], layout, format="oci-dir")
    refs = {d["annotations"]["org.opencontainers.image.ref.name"]: d["digest"] for d in _index(layout)}
    assert refs == {"1": test_image.record.manifest, "2": second.record.manifest}
    archive.save(test_image.store, [(test_image.record, ["other/app:2"])], layout, format="oci-dir")
    refs = {d["annotations"]["org.opencontainers.image.ref.name"]: d["digest"] for d in _index(layout)}
    assert refs == {"1": test_image.record.manifest, "2": test_image.record.manifest}


def _index(layout: Path) -> list[dict[str, Any]]:
    return json.loads((layout / "index.json").read_bytes())["manifests"]


def test_save_refuses_unknown_formats_and_foreign_directories(test_image: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown archive format"):
        save_bytes(test_image, fmt="tarball")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="not an OCI image layout"):
        archive.save(test_image.store, [(test_image.record, [])], tmp_path / "busy", format="oci-dir")
    assert os.listdir(tmp_path / "busy") == ["notes.txt"]


def test_save_notices_a_corrupt_blob_in_the_store(test_image: Any) -> None:
    path = test_image.store.content.path(test_image.layer_digest)
    data = bytearray(path.read_bytes())
    data[-9] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptContent, match=str(test_image.layer_digest)):
        save_bytes(test_image)


# -- the OCI JSON schemas -----------------------------------------------------------------------------------


def _schema_validator(name: str) -> Any:
    """A validator for one image-spec schema; the schemas `$ref` each other by file name (and nested draft-04
    `id`s move the base URI), so every reference is resolved by its last path segment."""
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    draft4 = pytest.importorskip("referencing.jsonschema").DRAFT4
    if not SCHEMAS.is_dir():
        pytest.skip("OCI image-spec schemas not installed (golang-github-opencontainers-image-spec-dev)")

    def retrieve(uri: str) -> Any:  # some schema files have no `$schema`: all are draft-04
        return draft4.create_resource(json.loads((SCHEMAS / uri.rsplit("/", 1)[-1]).read_bytes()))

    registry = referencing.Registry(retrieve=retrieve)
    schema = json.loads((SCHEMAS / name).read_bytes())
    return jsonschema.Draft4Validator(schema, registry=registry, format_checker=jsonschema.FormatChecker())


def test_written_layout_validates_against_the_oci_schemas(
    test_image: Any, make_image: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    second = make_image(["other/app:2"], {"app/run": b"run\n"})
    items = [(test_image.record, ["test/image:1"]), (second.record, [])]
    archive.save(test_image.store, items, layout, format="oci-dir")
    _schema_validator("image-layout-schema.json").validate(json.loads((layout / "oci-layout").read_bytes()))
    index = json.loads((layout / "index.json").read_bytes())
    _schema_validator("image-index-schema.json").validate(index)
    for descriptor in index["manifests"]:
        manifest = json.loads((layout / blob(descriptor["digest"])).read_bytes())
        _schema_validator("image-manifest-schema.json").validate(manifest)
        _schema_validator("config-schema.json").validate(
            json.loads((layout / blob(manifest["config"]["digest"])).read_bytes())
        )
        for layer in manifest["layers"]:
            assert (layout / blob(layer["digest"])).stat().st_size == layer["size"]


def test_schema_validator_rejects_a_bad_manifest() -> None:
    """Guard against a validator that resolves nothing and so accepts anything."""
    jsonschema = pytest.importorskip("jsonschema")
    bad = {
        "schemaVersion": 2,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": "nope", "size": 1},
        "layers": [],
    }
    with pytest.raises(jsonschema.ValidationError):
        _schema_validator("image-manifest-schema.json").validate(bad)


# -- other producers' layouts -------------------------------------------------------------------------------


def test_legacy_docker_archive_with_shared_layer_symlink(test_image: Any, other: ImageStore) -> None:
    """docker <= 24: `<id>/layer.tar` uncompressed, `<hex>.json` configs, and a layer two images share
    written once and symlinked (moby's saveLayer does that)."""
    base = uncompressed_layer(test_image)
    top = tar_of({"extra": b"more\n"})
    config1 = test_image.config_bytes
    config2 = config_for([Digest.of_bytes(base), Digest.of_bytes(top)])
    c1, c2 = Digest.of_bytes(config1).hex, Digest.of_bytes(config2).hex
    manifest = [
        {"Config": f"{c1}.json", "RepoTags": ["test/image:1"], "Layers": ["aaa/layer.tar"]},
        {
            "Config": f"{c2}.json",
            "RepoTags": ["test/two:latest"],
            "Layers": ["ccc/layer.tar", "bbb/layer.tar"],
        },
    ]
    files = {
        "aaa/VERSION": b"1.0",
        "aaa/json": b"{}",
        "aaa/layer.tar": base,
        "bbb/layer.tar": top,
        f"{c1}.json": config1,
        f"{c2}.json": config2,
        "manifest.json": json.dumps(manifest).encode(),
        "repositories": b'{"test/image":{"1":"aaa"}}',
    }
    data = tar_of(files, [link("ccc/layer.tar", "../aaa/layer.tar")])
    one, two = load(other, data)
    assert (one.config, one.names) == (test_image.record.config, ["docker.io/test/image:1"])
    assert (two.config, two.names) == (f"sha256:{c2}", ["docker.io/test/two:latest"])
    assert two.layer_sizes == [len(base), len(top)] and two.size == len(base) + len(top)
    manifest_two = other.manifest(two)
    assert [(d.media_type, d.digest, d.size) for d in manifest_two.layers] == [
        (mt.OCI_LAYER, Digest.of_bytes(base), len(base)),
        (mt.OCI_LAYER, Digest.of_bytes(top), len(top)),
    ]
    assert manifest_two.config == Descriptor(mt.OCI_CONFIG, Digest(c2), len(config2))
    assert load(ImageStore(other.root.parent / "third"), data)[1].manifest == two.manifest  # reproducible


def test_legacy_archive_with_gzip_and_zstd_layers_gets_matching_media_types(
    test_image: Any, other: ImageStore
) -> None:
    base = uncompressed_layer(test_image)
    top = tar_of({"extra": b"more\n"})
    layers = [gzip.compress(base, mtime=0), zstandard.ZstdCompressor().compress(top)]
    config = config_for([Digest.of_bytes(base), Digest.of_bytes(top)])
    files = {"l1.tar.gz": layers[0], "l2.tar.zst": layers[1], "config.json": config}
    files["manifest.json"] = json.dumps(
        [{"Config": "config.json", "RepoTags": None, "Layers": ["l1.tar.gz", "l2.tar.zst"]}]
    ).encode()
    [record] = load(other, tar_of(files))
    assert [d.media_type for d in other.manifest(record).layers] == [mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD]
    assert record.size == len(base) + len(top) and record.names == []


def test_nested_index_selects_linux_amd64(test_image: Any, other: ImageStore) -> None:
    files = members(save_bytes(test_image, fmt="oci-archive"))
    ours = json.loads(files["index.json"])["manifests"][0]
    ours.pop("annotations")
    arm = {"mediaType": mt.OCI_MANIFEST, "digest": f"sha256:{'0' * 64}", "size": 100}  # its blobs are absent
    nested = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                arm | {"platform": {"os": "linux", "architecture": "arm64"}},
                ours | {"platform": {"os": "linux", "architecture": "amd64"}},
            ],
        }
    )
    files[blob(Digest.of_bytes(nested))] = nested
    files["index.json"] = canonical_json(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": mt.OCI_INDEX,
                    "digest": str(Digest.of_bytes(nested)),
                    "size": len(nested),
                    "annotations": {"io.containerd.image.name": "example.com/nested:v1"},
                }
            ],
        }
    )
    [record] = load(other, tar_of(files))
    assert (record.manifest, record.names) == (test_image.record.manifest, ["example.com/nested:v1"])


@pytest.mark.parametrize(
    ("annotations", "names"),
    [
        ({"org.opencontainers.image.ref.name": "latest"}, []),  # a bare tag names no repository
        ({"org.opencontainers.image.ref.name": "example.com/app:v2"}, ["example.com/app:v2"]),
        ({}, []),
    ],
)
def test_names_from_index_annotations(
    test_image: Any, other: ImageStore, annotations: dict[str, str], names: list[str]
) -> None:
    layer = test_image.store.content.read_bytes(test_image.layer_digest)
    data = tar_of(oci_members(test_image.config_bytes, [layer], annotations))
    [record] = load(other, data)
    assert (record.config, record.names) == (test_image.record.config, names)


# -- corrupt and hostile archives ---------------------------------------------------------------------------


def test_blob_not_matching_its_name_is_corrupt_and_adds_no_image(test_image: Any, other: ImageStore) -> None:
    files = members(save_bytes(test_image))
    name = blob(test_image.layer_digest)
    files[name] = gzip.compress(b"something else")
    with pytest.raises(CorruptContent, match=name):
        load(other, tar_of(files))
    assert other.records() == []


def test_diff_ids_not_matching_the_layers_are_corrupt(test_image: Any, other: ImageStore) -> None:
    layer = test_image.store.content.read_bytes(test_image.layer_digest)
    config = config_for([Digest.of_bytes(b"not the layer")])
    with pytest.raises(CorruptContent, match="rootfs.diff_ids"):
        load(other, tar_of(oci_members(config, [layer])))
    assert other.records() == []
    config = config_for([])
    with pytest.raises(CorruptContent, match="1 layers but its config lists 0"):
        load(other, tar_of(oci_members(config, [layer])))


def test_a_layer_that_is_not_valid_gzip_is_corrupt(test_image: Any, other: ImageStore) -> None:
    layer = b"\x1f\x8b" + b"garbage" * 100
    config = config_for([Digest.of_bytes(b"")])
    with pytest.raises(CorruptContent, match="not valid gzip data"):
        load(other, tar_of(oci_members(config, [layer])))


def test_descriptor_size_must_match_the_blob(test_image: Any, other: ImageStore) -> None:
    layer = test_image.store.content.read_bytes(test_image.layer_digest)
    files = oci_members(test_image.config_bytes, [layer])
    index = json.loads(files["index.json"])
    index["manifests"][0]["size"] += 1
    files["index.json"] = json.dumps(index).encode()
    with pytest.raises(CorruptContent, match="descriptor says"):
        load(other, tar_of(files))


def test_one_bad_image_means_no_image_is_loaded(test_image: Any, make_image: Any, other: ImageStore) -> None:
    second = make_image(["other/app:2"], {"app/run": b"run\n"})
    items = [(test_image.record, ["test/image:1"]), (second.record, ["other/app:2"])]
    files = members(save_bytes(test_image, items))
    del files[blob(second.layer_digest)]
    with pytest.raises(InvalidArgument, match=f"has no {blob(second.layer_digest)}"):
        load(other, tar_of(files))
    assert other.records() == []


@pytest.mark.parametrize("where", ["in a blob", "between members"])
@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_archive_is_a_clean_error(
    test_image: Any, other: ImageStore, compressed: bool, where: str
) -> None:
    data = save_bytes(test_image)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        layer = tar.getmember(blob(test_image.layer_digest))
    cut = layer.offset_data + 100 if where == "in a blob" else layer.offset
    data = gzip.compress(data[:cut]) if compressed else data[:cut]
    with pytest.raises(InvalidArgument, match="cannot load the image archive"):
        load(other, data)
    assert other.records() == []


@pytest.mark.parametrize("data", [b"", b"hello, not a tar " * 100, gzip.compress(b"still not a tar " * 100)])
def test_not_a_tar_is_invalid(other: ImageStore, data: bytes) -> None:
    with pytest.raises(InvalidArgument, match="not a readable tar archive"):
        load(other, data)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"hello.txt": b"hi"}, "neither index.json"),
        ({"index.json": b"{not json"}, "not JSON"),
        ({"manifest.json": b"{not json"}, "manifest.json is not valid JSON"),
        ({"manifest.json": b'{"Config": "x"}'}, "not a list of images"),
        ({"manifest.json": b'[{"Config": 1, "Layers": []}]'}, "malformed entry"),
        ({"manifest.json": b"[]"}, "no linux/amd64 image"),
        ({"manifest.json": b'[{"Config": "c.json", "Layers": []}]'}, "has no c.json"),
    ],
)
def test_bad_metadata_is_invalid(other: ImageStore, files: dict[str, bytes], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        load(other, tar_of(files))


def test_hostile_member_names_write_nothing_outside_the_store(
    test_image: Any, other: ImageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "deep" / "er" / "cwd"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    absolute = tmp_path / "absolute-escape"
    files = members(save_bytes(test_image))
    files["../../escape"] = b"x"
    files[str(absolute)] = b"x"
    files["../../escape.json"] = b"{}"
    fifo = tarfile.TarInfo("blobs/fifo")
    fifo.type = tarfile.FIFOTYPE
    before = files_outside(tmp_path, other.root)
    [record] = load(other, tar_of(files, [fifo, link("blobs/outside", "/etc/passwd")]))
    assert record.manifest == test_image.record.manifest
    assert files_outside(tmp_path, other.root) == before
    assert not absolute.exists()


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../../etc/passwd", "/proc/self/environ"])
def test_a_blob_that_is_a_symlink_outside_is_missing(
    test_image: Any, other: ImageStore, tmp_path: Path, target: str
) -> None:
    files = members(save_bytes(test_image))
    name = blob(test_image.record.config)
    del files[name]
    before = files_outside(tmp_path, other.root)
    with pytest.raises(InvalidArgument, match=f"has no {name}"):
        load(other, tar_of(files, [link(name, target)]))
    assert other.records() == [] and files_outside(tmp_path, other.root) == before


def test_a_blob_linked_to_other_content_is_corrupt(test_image: Any, other: ImageStore) -> None:
    files = members(save_bytes(test_image))
    name = blob(test_image.record.config)
    del files[name]
    with pytest.raises(CorruptContent, match=name):
        load(other, tar_of(files, [link(name, blob(test_image.layer_digest), tarfile.LNKTYPE)]))


def test_a_link_to_the_right_blob_is_followed(test_image: Any, other: ImageStore) -> None:
    files = members(save_bytes(test_image))
    name = blob(test_image.record.config)
    files["elsewhere/config"] = files.pop(name)
    [record] = load(other, tar_of(files, [link(name, "../../elsewhere/config")]))
    assert record.config == test_image.record.config


def test_link_loops_are_invalid(test_image: Any, other: ImageStore) -> None:
    files = members(save_bytes(test_image))
    del files["index.json"]
    loop = [link("index.json", "a"), link("a", "b"), link("b", "index.json")]
    with pytest.raises(InvalidArgument, match="loop"):
        load(other, tar_of(files, loop))


def test_loads_a_zstd_archive_from_a_pipe(test_image: Any, other: ImageStore, tmp_path: Path) -> None:
    """A pipe cannot seek: the sniffed magic bytes must be put back in front of the stream."""
    path = tmp_path / "image.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(save_bytes(test_image)))
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as cat:
        assert cat.stdout is not None
        [record] = archive.load(other, cast(BinaryIO, cat.stdout))
    assert record.manifest == test_image.record.manifest
