"""tinykws.data.download against a local HTTP server: success and idempotence, resuming an
interrupted transfer with a Range request, a corrupt archive, and unsafe archive members."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tinykws import TinyKWSError
from tinykws.data.download import ARCHIVES, URL_ENV, Archive, download, escapes


class ArchiveServer(ThreadingHTTPServer):
    """Serves `files` (name -> bytes); names in `cut_once` are cut off half way the first time."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ArchiveHandler)
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/data/"


class ArchiveHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        server: ArchiveServer = self.server  # type: ignore[assignment]
        name = self.path.removeprefix("/data/")
        server.requests.append((name, self.headers.get("Range")))
        if name not in server.files:
            self.send_error(404)
            return
        body, start = server.files[name], 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if name in server.cut_once:
            server.cut_once.discard(name)
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    srv = ArchiveServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def make_tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A .tar.gz of files (name -> content) and symlinks (name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


# Random bytes do not compress, so the archive is large enough to be cut in the middle.
PAYLOAD = {
    "./yes/0a7c2a8d_nohash_0.wav": bytes(range(256)) * 400,
    "./no/0a7c2a8d_nohash_0.wav": hashlib.sha256(b"x").digest() * 3000,
    "./validation_list.txt": b"yes/0a7c2a8d_nohash_0.wav\n",
}


def serve(server: ArchiveServer, name: str, data: bytes, digest_of: bytes | None = None) -> Archive:
    server.files[name] = data
    digest = hashlib.sha256(data if digest_of is None else digest_of).hexdigest()
    return Archive(name, digest, "sha256", len(digest_of if digest_of is not None else data))


def test_download_extracts_and_a_second_call_does_nothing(server, tmp_path):
    archive = serve(server, "sc.tar.gz", make_tar(PAYLOAD))
    out = download(tmp_path / "sc", archive=archive, base_url=server.url)
    assert out == tmp_path / "sc"
    for name, data in PAYLOAD.items():
        assert (out / name).read_bytes() == data
    assert (out / ".sc.tar.gz.done").is_file()
    assert not (out / "sc.tar.gz").exists() and not (out / "sc.tar.gz.part").exists()
    assert not list(out.glob(".*.extracting"))
    assert server.requests == [("sc.tar.gz", None)]
    download(tmp_path / "sc", archive=archive, base_url=server.url)
    assert len(server.requests) == 1  # idempotent: no second transfer


def test_the_base_url_comes_from_the_environment(server, tmp_path, monkeypatch):
    archive = serve(server, "sc.tar.gz", make_tar(PAYLOAD))
    monkeypatch.setenv(URL_ENV, server.url)
    download(tmp_path / "sc", archive=archive)
    assert (tmp_path / "sc" / "yes").is_dir()


def test_an_interrupted_transfer_resumes_with_a_range_request(server, tmp_path):
    data = make_tar(PAYLOAD)
    archive = serve(server, "sc.tar.gz", data)
    server.cut_once.add("sc.tar.gz")
    download(tmp_path / "sc", archive=archive, base_url=server.url)
    half = len(data) // 2
    assert server.requests == [("sc.tar.gz", None), ("sc.tar.gz", f"bytes={half}-")]
    assert (tmp_path / "sc" / "no" / "0a7c2a8d_nohash_0.wav").read_bytes() == PAYLOAD[
        "./no/0a7c2a8d_nohash_0.wav"
    ]


def test_a_failed_call_keeps_the_part_file_and_the_next_call_resumes(server, tmp_path):
    data = make_tar(PAYLOAD)
    archive = serve(server, "sc.tar.gz", data)
    server.cut_once.add("sc.tar.gz")
    with pytest.raises(TinyKWSError, match="run the command again to resume"):
        download(tmp_path / "sc", archive=archive, base_url=server.url, attempts=1)
    part = tmp_path / "sc" / "sc.tar.gz.part"
    assert part.read_bytes() == data[: len(data) // 2]
    download(tmp_path / "sc", archive=archive, base_url=server.url, attempts=1)
    assert server.requests[-1] == ("sc.tar.gz", f"bytes={len(data) // 2}-")
    assert (tmp_path / "sc" / "validation_list.txt").is_file() and not part.exists()


def test_a_corrupt_archive_is_deleted_and_nothing_is_extracted(server, tmp_path):
    good = make_tar(PAYLOAD)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF
    archive = serve(server, "sc.tar.gz", bytes(corrupt), digest_of=good)
    with pytest.raises(TinyKWSError) as info:
        download(tmp_path / "sc", archive=archive, base_url=server.url)
    message = str(info.value)
    assert "\n" not in message and "checksum mismatch" in message and archive.digest in message
    assert sorted(p.name for p in (tmp_path / "sc").iterdir()) == []


@pytest.mark.parametrize(
    "members,links",
    [
        ({"../evil.txt": b"x"}, None),
        ({"yes/../../evil.txt": b"x"}, None),
        ({"/tmp/evil.txt": b"x"}, None),
        ({"yes/a.wav": b"x"}, {"yes/link": "../../evil.txt"}),
        ({"yes/a.wav": b"x"}, {"link": "/etc/passwd"}),
    ],
)
def test_unsafe_members_stop_extraction(server, tmp_path, members, links):
    archive = serve(server, "bad.tar.gz", make_tar({"./ok.txt": b"fine", **members}, links))
    out = tmp_path / "target" / "sc"
    with pytest.raises(TinyKWSError) as info:
        download(out, archive=archive, base_url=server.url)
    assert "refusing to extract" in str(info.value) and "\n" not in str(info.value)
    # Nothing moved into the target (not even the safe member before the bad one), nothing
    # written next to it, and the verified archive is kept for inspection.
    assert sorted(p.name for p in out.iterdir()) == ["bad.tar.gz"]
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["sc"]
    assert not Path("/tmp/evil.txt").exists()


def test_safe_symlinks_inside_the_folder_are_kept(server, tmp_path):
    archive = serve(server, "ok.tar.gz", make_tar({"yes/a.wav": b"x"}, {"yes/b.wav": "a.wav"}))
    download(tmp_path / "sc", archive=archive, base_url=server.url)
    assert (tmp_path / "sc" / "yes" / "b.wav").read_bytes() == b"x"


def test_http_errors_are_one_line(server, tmp_path):
    archive = Archive("missing.tar.gz", "0" * 64)
    with pytest.raises(TinyKWSError, match=r"missing.tar.gz: HTTP 404"):
        download(tmp_path / "sc", archive=archive, base_url=server.url)
    closed = "http://127.0.0.1:9/"  # discard port: nothing listens
    with pytest.raises(TinyKWSError, match="cannot connect"):
        download(tmp_path / "sc2", archive=archive, base_url=closed)
    with pytest.raises(TinyKWSError, match="version must be one of v0.02, v0.01, test-v0.02"):
        download(tmp_path / "sc3", version="v3")


def test_pinned_checksums_are_the_tensorflow_datasets_values():
    # tensorflow_datasets/url_checksums/speech_commands.txt (size, sha256).
    assert ARCHIVES["v0.02"].size_bytes == 2428923189
    assert ARCHIVES["v0.02"].digest.startswith("af14739ee7dc311471de98f5f9d2c919")
    assert ARCHIVES["test-v0.02"].size_bytes == 112563277
    assert ARCHIVES["test-v0.02"].digest.startswith("cc2a00c1147c2254e9be3fa0f779d8c1")
    assert ARCHIVES["v0.01"].algorithm == "md5"
    for archive in ARCHIVES.values():
        assert re.fullmatch(r"[0-9a-f]+", archive.digest)
        assert len(archive.digest) == hashlib.new(archive.algorithm).digest_size * 2


def test_escapes():
    from pathlib import PurePosixPath as P

    assert escapes(P("../a")) and escapes(P("a/../../b"))
    assert not escapes(P("a/../b")) and not escapes(P("./a/b"))
