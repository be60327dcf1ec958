"""Task-independent download helpers: resumable, checksum-verified fetch and safe archive extraction."""

import filecmp
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from common.errors import UserError
from common.progress import Progress

CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_S = 60


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()


def md5sum(path: Path) -> str:
    """Hex MD5 of the file at `path`, read in 1 MiB chunks."""
    return _digest(path, "md5")


def sha1sum(path: Path) -> str:
    """Hex SHA-1 of the file at `path`, read in 1 MiB chunks."""
    return _digest(path, "sha1")


def sha256sum(path: Path) -> str:
    """Hex SHA-256 of the file at `path`, read in 1 MiB chunks."""
    return _digest(path, "sha256")


def _checksum_mismatch(path: Path, md5: str | None, sha1: str | None, sha256: str | None) -> str | None:
    """None when `path` matches every given checksum, else 'md5 expected X, got Y'."""
    for name, expected, compute in (("md5", md5, md5sum), ("sha1", sha1, sha1sum), ("sha256", sha256, sha256sum)):
        if expected is not None:
            actual = compute(path)
            if actual != expected.lower():
                return f"{name} expected {expected.lower()}, got {actual}"
    return None


def _open_source(url: str, offset: int) -> tuple[BinaryIO, int | None, bool]:
    """Open `url` positioned at byte `offset` when the source allows it.

    Returns (stream, total size in bytes or None when unknown, whether the stream starts at `offset`;
    False means it starts at byte 0 and the partial download must be discarded).
    """
    scheme = urlparse(url).scheme
    if scheme in ("http", "https"):
        request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
        try:
            response = urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:  # range past the end: the .part is stale, start over
                return _open_source(url, 0)
            raise
        length = response.headers.get("Content-Length")
        resumed = response.status == 206
        total = (int(length) + (offset if resumed else 0)) if length is not None else None
        return response, total, resumed
    if scheme not in ("", "file"):
        raise UserError(
            f"Cannot download {url}: unsupported URL scheme '{scheme}'; use http(s)://, file:// or a local path"
        )
    path = Path(urllib.request.url2pathname(urlparse(url).path)) if scheme == "file" else Path(url)
    if not path.is_file():
        raise UserError(f"Download source {path} does not exist; check the URL or path")
    total = path.stat().st_size
    stream = open(path, "rb")
    resumed = offset <= total
    stream.seek(offset if resumed else 0)
    return stream, total, resumed


def fetch(url: str, dest: Path, md5: str | None = None, sha256: str | None = None, sha1: str | None = None) -> Path:
    """Download `url` (http(s)://, file:// or a local path) to `dest`, resuming and verifying checksums.

    Skips the download when `dest` exists and matches the given checksums. Bytes go to `dest`.part,
    which a re-run resumes from; `dest` appears (atomically) only once the checksums match.
    Returns `dest`.
    """
    dest = Path(dest)
    if dest.is_file() and _checksum_mismatch(dest, md5, sha1, sha256) is None:
        print(f"{dest} already present")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    try:
        source, total, resumed = _open_source(url, offset)
        with source, open(part, "ab" if resumed else "wb") as out:
            progress = Progress(dest.name, total, unit="bytes", done=offset if resumed else 0)
            while chunk := source.read(CHUNK_BYTES):
                out.write(chunk)
                progress.advance(len(chunk))
            progress.finish()
    except (OSError, http.client.HTTPException) as err:  # URLError, timeouts and resets are OSErrors
        raise UserError(
            f"Downloading {url} failed ({err}); check the URL and connection and re-run, which resumes from {part}"
        ) from err
    if total is not None and part.stat().st_size < total:
        raise UserError(
            f"Downloading {url} stopped after {part.stat().st_size} of {total} bytes; re-run to resume from {part}"
        )
    mismatch = _checksum_mismatch(part, md5, sha1, sha256)
    if mismatch is not None:
        part.unlink()
        raise UserError(
            f"Checksum mismatch for {url}: {mismatch}; the partial file was deleted, "
            "check the URL (or the expected checksum) and re-run"
        )
    os.replace(part, dest)
    return dest


def mirror_url(url: str, mirror: str | None) -> str:
    """`url`, or the same file name under `mirror` (a URL or folder holding the official archives)."""
    return url if mirror is None else f"{str(mirror).rstrip('/')}/{url.rsplit('/', 1)[1]}"


def _check_member_inside(name: str, root: Path, archive: Path) -> None:
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise UserError(
            f"Refusing to extract {archive}: member '{name}' would land outside the target "
            "folder; the archive is corrupt or malicious, download it again from a trusted source"
        )


def _same_file(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def merge_tree(source: Path, dest_dir: Path, force: bool = False, what: str = "") -> None:
    """Move every file under `source` to the same place under `dest_dir`, keeping `dest_dir`'s other files.

    A file already there with the same content is left as it is; one whose content differs is replaced
    only with `force`: without it, nothing is moved and a UserError lists what would be replaced (`what`
    names the source for the message). Files of `dest_dir` that `source` does not hold are never touched.
    """
    source, dest_dir = Path(source), Path(dest_dir)
    entries = [(path, dest_dir / path.relative_to(source)) for path in sorted(source.rglob("*"))]
    folders = [target for path, target in entries if path.is_dir() and not path.is_symlink()]
    moves = [(path, target) for path, target in entries if target not in folders]
    blocked = [target for target in folders if target.exists() and not target.is_dir()] + [
        target for _, target in moves if target.exists() and not target.is_file()
    ]
    if blocked:
        raise UserError(
            f"Cannot unpack {what or source}: {blocked[0]} is in the way (not a file); move it elsewhere and re-run"
        )
    differing = [target for path, target in moves if target.is_file() and not _same_file(path, target)]
    if differing and not force:
        listed = "\n  ".join(str(target) for target in differing[:10])
        more = f"\n  ... and {len(differing) - 10} more" if len(differing) > 10 else ""
        raise UserError(
            f"Unpacking {what or source} would replace {len(differing)} existing file"
            f"{'s' if len(differing) != 1 else ''} whose content differs:\n  {listed}{more}\n"
            "nothing was changed; move them elsewhere, or re-run with --force to replace them"
        )
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for path, target in moves:
        if target.is_file() and target not in differing:
            continue  # already there, identical
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def extract(archive: Path, dest_dir: Path, force: bool = False) -> None:
    """Unpack a .tar.gz/.tgz/.tar or .zip `archive` into `dest_dir`.

    Members are first extracted into a temporary sibling of `dest_dir`, then moved into `dest_dir` file by
    file (`merge_tree`), so an interrupted run leaves no half-written files there. A file already in
    `dest_dir` with different content is replaced only with `force` (else a UserError lists them, and
    nothing is changed); files the archive does not hold are kept.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if not archive.is_file():
        raise UserError(f"Archive {archive} not found; download it first")
    if not archive.name.endswith((".tar.gz", ".tgz", ".tar", ".zip")):
        raise UserError(f"Cannot extract {archive}: unsupported archive type; expected .tar.gz, .tgz, .tar or .zip")
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".extracting", dir=dest_dir.parent))
    root = staging.resolve()
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                for name in zipped.namelist():
                    _check_member_inside(name, root, archive)
                zipped.extractall(staging)
        else:
            with tarfile.open(archive) as tarred:
                for member in tarred.getmembers():
                    _check_member_inside(member.name, root, archive)
                tarred.extractall(staging, filter="data")  # also refuses links pointing outside
        merge_tree(staging, dest_dir, force, str(archive))
    except tarfile.FilterError as err:  # a link or special file pointing outside, refused by the "data" filter
        raise UserError(
            f"Refusing to extract {archive}: member '{err.tarinfo.name}' would land or point outside "
            f"the target folder ({err}); the archive is corrupt or malicious, download it again from a "
            "trusted source"
        ) from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(
            f"Cannot extract {archive} ({err}); the file is corrupt, delete it and download it again"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


SPLITS = ("test", "train", "all")


def check_split(split: str) -> str:
    """`split` when it is test, train or all; else a UserError."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split
