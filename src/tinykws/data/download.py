"""Download the official Speech Commands archives: resumable, verified, safely extracted.

`download(out, "v0.02")` fetches `speech_commands_v0.02.tar.gz` into `<out>/<name>.part`
(resuming an interrupted transfer with an HTTP Range request), checks its size and checksum
against the pinned values, extracts it into `out`, deletes the archive and writes a marker file
`<out>/.<name>.done`; a second call finds the marker and does nothing.

- A checksum mismatch deletes the `.part` file (resuming a corrupt file cannot repair it) and
  extracts nothing.
- Extraction goes through a staging folder inside `out`; members with absolute paths, `..`
  components, links pointing outside the folder, or device files stop it before anything is
  moved into `out`.
- The base URL is `http://download.tensorflow.org/data`, or the `TINYKWS_DATA_URL` environment
  variable, or the `base_url` argument (a mirror).

Checksums: v0.02 and the v0.02 test set are the sha256 values TensorFlow Datasets records
(`tensorflow_datasets/url_checksums/speech_commands.txt`, with their sizes). TensorFlow Datasets
records nothing for v0.01; its md5 is the one torchaudio's SPEECHCOMMANDS dataset pins.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tinykws.config import check_choice
from tinykws.errors import TinyKWSError
from tinykws.io import write_json
from tinykws.log import logger
from tinykws.progress import make_progress

DEFAULT_BASE_URL = "http://download.tensorflow.org/data"
URL_ENV = "TINYKWS_DATA_URL"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
MIB = float(1 << 20)


@dataclass(frozen=True)
class Archive:
    """A file to fetch and how to check it.

    Attributes:
        filename: name under the base URL.
        digest: expected hex digest.
        algorithm: hashlib name of the digest ("sha256", or "md5" where no sha256 is published).
        size_bytes: expected size, or None when unknown.
    """

    filename: str
    digest: str
    algorithm: str = "sha256"
    size_bytes: int | None = None


ARCHIVES = {
    "v0.02": Archive(
        "speech_commands_v0.02.tar.gz",
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        "sha256",
        2428923189,
    ),
    "v0.01": Archive("speech_commands_v0.01.tar.gz", "3cd23799cb2bbdec517f1cc028f8d43c", "md5"),
    "test-v0.02": Archive(
        "speech_commands_test_set_v0.02.tar.gz",
        "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
        "sha256",
        112563277,
    ),
}


class TransferInterrupted(Exception):
    """The connection ended before the whole file arrived (the .part file is kept)."""


def download(
    out_dir: str | os.PathLike,
    version: str = "v0.02",
    base_url: str | None = None,
    archive: Archive | None = None,
    attempts: int = 3,
) -> Path:
    """Fetch, verify and extract one archive into `out_dir`; a no-op when already done.

    Args:
        out_dir: folder to extract into (created if needed).
        version: "v0.02", "v0.01" or "test-v0.02" (the official test set).
        base_url: where the archives are; default `$TINYKWS_DATA_URL` or download.tensorflow.org.
        archive: fetch this archive instead of the pinned one for `version` (mirrors, tests).
        attempts: connections tried per call; each one resumes where the last one stopped.

    Returns:
        `out_dir` as a Path.

    Example:
        >>> download("data/speech_commands_test", "test-v0.02")  # doctest: +SKIP
        PosixPath('data/speech_commands_test')
    """
    if archive is None:
        check_choice("version", version, tuple(ARCHIVES))
        archive = ARCHIVES[version]
    out = Path(out_dir).expanduser()
    marker = out / f".{archive.filename}.done"
    if marker.is_file():
        logger.info(f"{out}: {archive.filename} already extracted (delete {marker} to redo)")
        return out
    out.mkdir(parents=True, exist_ok=True)
    url = archive_url(archive, base_url)
    path = out / archive.filename
    if not path.is_file():
        part = fetch(url, out / f"{archive.filename}.part", archive.size_bytes, attempts)
        verify(part, archive, url)
        os.replace(part, path)
    else:
        verify(path, archive, url)
    files = extract_safely(path, out)
    write_json(marker, {"url": url, archive.algorithm: archive.digest, "files": files})
    path.unlink()
    logger.info(f"{out}: extracted {files} files from {archive.filename}")
    return out


def archive_url(archive: Archive, base_url: str | None = None) -> str:
    """The archive's URL under `base_url`, `$TINYKWS_DATA_URL` or the official location."""
    base = base_url or os.environ.get(URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{archive.filename}"


def fetch(url: str, part: Path, size_bytes: int | None, attempts: int = 3) -> Path:
    """Download `url` into `part`, appending to what an earlier attempt left there."""
    for _ in range(max(1, attempts)):
        try:
            fetch_once(url, part, size_bytes)
            return part
        except TransferInterrupted as exc:
            logger.warning(f"{url}: transfer interrupted ({exc}); resuming")
    raise TinyKWSError(
        f"{url}: transfer interrupted {attempts} times; run the command again to resume from {part}"
    )


def fetch_once(url: str, part: Path, size_bytes: int | None) -> None:
    """One HTTP request for the bytes `part` is missing (Range), streamed with a progress bar."""
    have = part.stat().st_size if part.exists() else 0
    if size_bytes is not None and have > size_bytes:
        part.unlink()  # longer than the archive: not a prefix of it
        have = 0
    if size_bytes is not None and have == size_bytes:
        return
    response = open_url(url, have)
    if response is None:  # the server has nothing past `have`: the file is complete
        return
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header and sends everything again
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else size_bytes
        with open(part, "ab" if have else "wb") as f:
            stream(response, f, total, have, part.name)
    received = part.stat().st_size
    if total is not None and received < total:
        raise TransferInterrupted(f"{received} of {total} bytes")


def open_url(url: str, offset: int):
    """Open `url` from byte `offset`; None when that offset is already the end of the file."""
    import urllib.error
    import urllib.request

    headers = {"Range": f"bytes={offset}-"} if offset else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # Range Not Satisfiable: nothing left to send
            return None
        raise TinyKWSError(
            f"{url}: HTTP {exc.code} {exc.reason}; check the version, or set {URL_ENV} to a mirror"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TinyKWSError(
            f"{url}: cannot connect ({reason}); check the network, or set {URL_ENV} to a mirror"
        ) from None


def stream(response, f, total: int | None, have: int, name: str) -> None:
    """Copy the response body into `f` in chunks, showing MiB done of MiB total."""
    import http.client

    with make_progress() as progress:
        task = progress.add_task(
            f"{name} (MiB)", total=total / MIB if total else None, completed=have / MIB, status=""
        )
        try:
            while chunk := response.read(CHUNK_BYTES):
                f.write(chunk)
                progress.advance(task, len(chunk) / MIB)
        except (OSError, http.client.HTTPException) as exc:
            raise TransferInterrupted(str(exc) or type(exc).__name__) from None


def verify(path: Path, archive: Archive, url: str) -> None:
    """Check size and digest; on a mismatch delete `path` and raise a one-line error."""
    size = path.stat().st_size
    problem = None
    if archive.size_bytes is not None and size != archive.size_bytes:
        problem = f"size {size} bytes, expected {archive.size_bytes}"
    else:
        digest = file_digest(path, archive.algorithm)
        if digest != archive.digest.lower():
            problem = f"{archive.algorithm} {digest}, expected {archive.digest}"
    if problem:
        path.unlink()
        raise TinyKWSError(
            f"{url}: checksum mismatch ({problem}); the corrupt download was deleted and nothing "
            "was extracted, run the command again"
        )


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def extract_safely(path: Path, out: Path) -> int:
    """Extract a tar archive into `out` via a staging folder; returns the number of files.

    Every member is checked before it is written (see `check_member`), and tarfile's "data"
    filter checks again; if any member is refused, the staging folder is deleted and `out` is
    left as it was.
    """
    staging = out / f".{path.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    files = 0
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                check_member(member, path, out)
                tar.extract(member, staging, **safe)
                files += member.isfile()
        merge_into(staging, out)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise TinyKWSError(
            f"{path}: cannot extract ({exc}); delete it and download again"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def check_member(member: tarfile.TarInfo, path: Path, out: Path) -> None:
    """Refuse members that would land outside the target folder, or that are not plain files,
    folders or links inside it."""
    name = PurePosixPath(member.name)
    unsafe = name.is_absolute() or ".." in name.parts or member.name.startswith(("\\", "/"))
    if member.issym() or member.islnk():
        # A symlink's target is relative to its own folder; a hard link's to the archive root.
        base = name.parent if member.issym() else PurePosixPath()
        target = PurePosixPath(member.linkname)
        unsafe = unsafe or target.is_absolute() or escapes(base / target)
    elif not (member.isfile() or member.isdir()):
        unsafe = True
    if unsafe:
        raise TinyKWSError(
            f"{path}: member '{member.name}' would be written outside {out} or is not a regular "
            "file; refusing to extract this archive (nothing was extracted)"
        )


def escapes(relative: PurePosixPath) -> bool:
    """True when a relative path climbs above its starting folder once '..' is resolved."""
    depth = 0
    for part in relative.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def merge_into(staging: Path, out: Path) -> None:
    """Move everything from `staging` into `out`, merging folders that already exist."""
    for folder, dirs, files in os.walk(staging):
        target = out / Path(folder).relative_to(staging)
        target.mkdir(exist_ok=True)
        for name in files + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            os.replace(Path(folder) / name, target / name)
