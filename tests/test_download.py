"""Tests for common/download.py: fetch (file://, path, HTTP with Range), checksums, resume, safe extraction."""

import hashlib
import http.server
import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from common import download
from common.download import extract, fetch, md5sum, sha1sum, sha256sum
from common.errors import UserError

PAYLOAD = os.urandom(300_000)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
PAYLOAD_SHA1 = hashlib.sha1(PAYLOAD).hexdigest()
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
HALF = len(PAYLOAD) // 2


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "payload.bin"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


@pytest.fixture
def bytes_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of every chunk fetch reads from its source."""
    chunks: list[int] = []
    real_open_source = download._open_source

    class CountingStream:
        def __init__(self, stream):
            self.stream = stream

        def read(self, size: int) -> bytes:
            chunk = self.stream.read(size)
            chunks.append(len(chunk))
            return chunk

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.stream.close()

    def counting_open_source(url, offset):
        stream, total, resumed = real_open_source(url, offset)
        return CountingStream(stream), total, resumed

    monkeypatch.setattr(download, "_open_source", counting_open_source)
    return chunks


def test_checksum_helpers_match_hashlib(source: Path) -> None:
    assert md5sum(source) == PAYLOAD_MD5
    assert sha1sum(source) == PAYLOAD_SHA1
    assert sha256sum(source) == PAYLOAD_SHA256


def test_fetch_file_url_verifies_checksums_and_draws_progress(source, tmp_path, capsys) -> None:
    dest = tmp_path / "out" / "payload.bin"
    assert fetch(source.as_uri(), dest, md5=PAYLOAD_MD5, sha256=PAYLOAD_SHA256, sha1=PAYLOAD_SHA1) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("payload.bin.part").exists()
    assert "MB/s" in capsys.readouterr().err


def test_fetch_plain_path(source, tmp_path) -> None:
    dest = tmp_path / "payload.bin"
    fetch(str(source), dest, md5=PAYLOAD_MD5.upper())
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("checksum", ["md5", "sha1", "sha256"])
def test_fetch_checksum_mismatch_leaves_nothing(source, tmp_path, checksum) -> None:
    dest = tmp_path / "payload.bin"
    with pytest.raises(UserError) as raised:
        fetch(source.as_uri(), dest, **{checksum: "0" * 32})
    actual = {"md5": PAYLOAD_MD5, "sha1": PAYLOAD_SHA1, "sha256": PAYLOAD_SHA256}[checksum]
    assert "0" * 32 in str(raised.value) and actual in str(raised.value)
    assert list(tmp_path.glob("payload.bin*")) == []


def test_fetch_resumes_local_part_reading_only_the_rest(source, tmp_path, bytes_read) -> None:
    dest = tmp_path / "payload.bin"
    dest.with_name("payload.bin.part").write_bytes(PAYLOAD[:HALF])
    fetch(source.as_uri(), dest, md5=PAYLOAD_MD5)
    assert dest.read_bytes() == PAYLOAD
    assert sum(bytes_read) == len(PAYLOAD) - HALF


def test_fetch_restarts_when_part_is_longer_than_source(source, tmp_path) -> None:
    dest = tmp_path / "payload.bin"
    dest.with_name("payload.bin.part").write_bytes(PAYLOAD + b"stale")
    fetch(str(source), dest, md5=PAYLOAD_MD5)
    assert dest.read_bytes() == PAYLOAD


def test_fetch_skips_when_present_with_matching_checksum(source, tmp_path, bytes_read, capsys) -> None:
    dest = tmp_path / "payload.bin"
    dest.write_bytes(PAYLOAD)
    fetch(source.as_uri(), dest, md5=PAYLOAD_MD5)
    assert bytes_read == []
    assert "already present" in capsys.readouterr().out


def test_fetch_replaces_present_file_with_wrong_checksum(source, tmp_path) -> None:
    dest = tmp_path / "payload.bin"
    dest.write_bytes(b"corrupt")
    fetch(source.as_uri(), dest, md5=PAYLOAD_MD5)
    assert dest.read_bytes() == PAYLOAD


def test_fetch_missing_source_is_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        fetch((tmp_path / "nope.bin").as_uri(), tmp_path / "out.bin")


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /payload.bin, honouring 'Range: bytes=N-' unless the server says otherwise."""

    def do_GET(self) -> None:
        self.server.range_headers.append(self.headers.get("Range"))
        if self.path != "/payload.bin":
            self.send_error(404)
            return
        start = 0
        if self.server.honour_range and self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").removesuffix("-"))
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.server.bytes_sent += len(body)  # counted before sending: the client may finish before we return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(params=[True, False], ids=["range", "no-range"])
def http_server(request):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    server.honour_range, server.range_headers, server.bytes_sent = request.param, [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_fetch_resumes_over_http(http_server, tmp_path) -> None:
    url = f"http://127.0.0.1:{http_server.server_address[1]}/payload.bin"
    dest = tmp_path / "payload.bin"
    dest.with_name("payload.bin.part").write_bytes(PAYLOAD[:HALF])
    fetch(url, dest, sha256=PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.range_headers == [f"bytes={HALF}-"]
    assert http_server.bytes_sent == (len(PAYLOAD) - HALF if http_server.honour_range else len(PAYLOAD))


def test_fetch_http_error_is_user_error_that_mentions_resume(http_server, tmp_path) -> None:
    url = f"http://127.0.0.1:{http_server.server_address[1]}/missing.bin"
    with pytest.raises(UserError, match="404.*re-run") as raised:
        fetch(url, tmp_path / "missing.bin")
    assert url in str(raised.value)
    assert not (tmp_path / "missing.bin").exists()


def _tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def _zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, content in members.items():
            zipped.writestr(name, content)
    return path


@pytest.mark.parametrize("make_archive,name", [(_tar_with, "a.tar.gz"), (_tar_with, "a.tgz"), (_zip_with, "a.zip")])
def test_extract_puts_members_in_place_without_leftovers(tmp_path, make_archive, name) -> None:
    archive = make_archive(tmp_path / name, {"top/a.txt": b"alpha", "top/sub/b.txt": b"beta"})
    dest_dir = tmp_path / "data"
    (dest_dir / "top").mkdir(parents=True)
    (dest_dir / "top" / "stale.txt").write_text("a file the archive does not hold")
    extract(archive, dest_dir)
    assert (dest_dir / "top" / "a.txt").read_bytes() == b"alpha"
    assert (dest_dir / "top" / "sub" / "b.txt").read_bytes() == b"beta"
    assert (dest_dir / "top" / "stale.txt").read_text() == "a file the archive does not hold"  # never deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "data"])


@pytest.mark.parametrize("make_archive,name", [(_tar_with, "evil.tar.gz"), (_zip_with, "evil.zip")])
@pytest.mark.parametrize("member", ["../escaped.txt", "ok/../../escaped.txt", "/tmp/escaped_abs.txt"])
def test_extract_refuses_path_traversal(tmp_path, make_archive, name, member) -> None:
    archive = make_archive(tmp_path / name, {"fine.txt": b"fine", member: b"evil"})
    dest_dir = tmp_path / "data"
    with pytest.raises(UserError, match="outside"):
        extract(archive, dest_dir)
    assert list(dest_dir.iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "data"])


def test_extract_corrupt_archive_is_user_error(tmp_path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"not a tarball")
    with pytest.raises(UserError, match="corrupt"):
        extract(archive, tmp_path / "data")


@pytest.mark.parametrize("make_archive,name", [(_tar_with, "a.tar.gz"), (_zip_with, "a.zip")])
def test_extract_never_replaces_a_differing_file_without_force(tmp_path, make_archive, name) -> None:
    archive = make_archive(tmp_path / name, {"top/a.txt": b"alpha", "top/b.txt": b"beta", "top/c.txt": b"gamma"})
    dest_dir = tmp_path / "data"
    (dest_dir / "top").mkdir(parents=True)
    (dest_dir / "top" / "a.txt").write_bytes(b"alpha")  # the same: fine
    (dest_dir / "top" / "b.txt").write_bytes(b"my own beta")  # differs: refused
    with pytest.raises(UserError, match=r"(?s)would replace 1 existing file whose.*top/b\.txt.*--force") as raised:
        extract(archive, dest_dir)
    assert "a.txt" not in str(raised.value)
    assert sorted(p.name for p in (dest_dir / "top").iterdir()) == ["a.txt", "b.txt"]  # nothing changed
    assert (dest_dir / "top" / "b.txt").read_bytes() == b"my own beta"
    extract(archive, dest_dir, force=True)
    assert [(dest_dir / "top" / n).read_bytes() for n in ("a.txt", "b.txt", "c.txt")] == [b"alpha", b"beta", b"gamma"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "data"])


def test_extract_refuses_a_folder_where_a_file_goes(tmp_path) -> None:
    archive = _tar_with(tmp_path / "a.tar.gz", {"top/a.txt": b"alpha"})
    (tmp_path / "data" / "top" / "a.txt").mkdir(parents=True)
    with pytest.raises(UserError, match="top/a.txt is in the way"):
        extract(archive, tmp_path / "data", force=True)


def test_check_split() -> None:
    assert [download.check_split(split) for split in download.SPLITS] == ["test", "train", "all"]
    with pytest.raises(UserError, match="unknown split 'both'; valid splits: test, train, all"):
        download.check_split("both")


# ------------------------------------------------------------------------------------------------
# Progress: a bar on a terminal, whole lines elsewhere


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_off_a_terminal_writes_whole_lines(monkeypatch) -> None:
    from common import progress

    monkeypatch.setattr(progress, "LOG_MIN_GAP_S", 0.0)
    log = io.StringIO()
    bar = progress.Progress("items", 95, stream=log)
    for _ in range(95):
        bar.advance()
    bar.finish()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert len(lines) == 10 and lines[-1].startswith("items [##############################] 95/95")  # a tenth each

    monkeypatch.setattr(progress, "LOG_MIN_GAP_S", 3600.0)  # quick work: its last line only
    log = io.StringIO()
    bar = progress.Progress("quick", 95, stream=log)
    for _ in range(95):
        bar.advance()
    bar.finish()
    assert log.getvalue().splitlines() == [line for line in log.getvalue().splitlines() if "95/95" in line]
    assert len(log.getvalue().splitlines()) == 1

    terminal = _Terminal()
    bar = progress.Progress("live", 3, stream=terminal)
    bar.advance(3)
    bar.finish()
    assert terminal.getvalue().startswith("\rlive") and terminal.getvalue().endswith("\n")


def test_a_build_step_shows_its_files_compiled_of_the_total(tmp_path, monkeypatch, capsys) -> None:
    """mcu_build._run counts a build's products while it runs (how TFLM's first build shows progress)."""
    from common import progress
    from common.deploy import mcu_build

    monkeypatch.setattr(mcu_build, "PROGRESS_POLL_S", 0.05)
    monkeypatch.setattr(progress, "LOG_MIN_GAP_S", 0.0)
    script = f"for i in 1 2 3 4; do touch {tmp_path}/$i.o; sleep 0.3; done"
    count = lambda: len(list(tmp_path.glob("*.o")))  # noqa: E731
    mcu_build._run(["bash", "-c", script], tmp_path / "build.log", progress=("compiled", 4, count))
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("compiled [##############################] 4/4")
    assert len(lines) >= 3 and "\r" not in "".join(lines)  # several lines as it went, whole lines off a terminal
