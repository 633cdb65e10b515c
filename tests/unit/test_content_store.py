import os
import threading
from pathlib import Path

import pytest

from intermodal.errors import CorruptContent, NotFound
from intermodal.image.content import ContentStore
from intermodal.image.digest import Digest


def test_write_commits_by_digest_and_reads_back(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = store.write_bytes(b"hello")
    assert digest == Digest.of_bytes(b"hello")
    assert store.read_bytes(digest) == b"hello"
    assert list(store) == [digest]
    assert store.ingests() == []


def test_mismatched_expected_digest_is_discarded(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with pytest.raises(CorruptContent, match="discarded"):
        store.write_bytes(b"hello", expected=Digest.of_bytes(b"other"))
    assert list(store) == []
    assert store.ingests() == []


def test_size_mismatch_is_rejected(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with pytest.raises(CorruptContent), store.writer(size=10) as w:
        w.write(b"short")
    assert list(store) == []


def test_failed_write_leaves_nothing_visible(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"partial")
        raise RuntimeError("network dropped")
    assert list(store) == []
    assert store.ingests() == []


def test_ingest_with_ref_resumes_from_partial_bytes(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = os.urandom(100_000)
    expected = Digest.of_bytes(data)
    with pytest.raises(ConnectionError), store.writer(expected, len(data), ref=str(expected)) as w:
        w.write(data[:40_000])
        raise ConnectionError
    with store.writer(expected, len(data), ref=str(expected)) as w:
        assert w.offset == 40_000
        w.write(data[w.offset :])
    assert store.read_bytes(expected) == data


def test_corrupt_blob_is_detected_on_read(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = store.write_bytes(b"payload" * 1000)
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(CorruptContent, match="corrupt"):
        store.read_bytes(digest)
    with pytest.raises(CorruptContent), store.open(digest) as reader:
        while reader.read(3):
            pass
    assert not store.verify(digest)


def test_missing_blob_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        ContentStore(tmp_path).read_bytes(Digest("0" * 64))


def test_concurrent_writers_of_the_same_blob_agree(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = os.urandom(1 << 20)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.write_bytes(data)
        except BaseException as e:  # pragma: no cover - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.read_bytes(Digest.of_bytes(data)) == data


def test_reader_that_stops_at_the_exact_size_still_detects_corruption(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = store.write_bytes(b"x" * 100)
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"y" * 100)
    with pytest.raises(CorruptContent), store.open(digest) as reader:
        reader.read(100)
