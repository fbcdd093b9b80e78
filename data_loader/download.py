"""Download a zip archive, verify it, and put its folder in place only when it is whole."""

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from utils.errors import DataError

CHUNK = 1 << 16


def file_digest(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url, target, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            open(target, "wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {url.rsplit('/', 1)[-1]}") as bar,
        ):
            received = 0
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise DataError(f"{url}: the connection closed after {received} of {total} bytes")


def fetch_archive(url, dest_dir, folder, md5=None, required_files=(), file_sha256=None, timeout=60):
    """Download `url` (a zip holding `folder/`) and extract it to `dest_dir/folder`.

    md5: the archive's published MD5 (checked when given). required_files: names that must be in
    the folder. file_sha256: {name: sha256} of extracted files to check. The archive goes to a
    temporary file and is extracted into a temporary folder next to the destination; only a
    verified folder is renamed into place, so an interrupted or bad download leaves nothing
    that looks complete. Returns the folder's path.
    """
    dest_dir = Path(dest_dir)
    final = dest_dir / folder
    manual = (
        f"download {url} yourself and unzip it into {dest_dir.resolve()} so that "
        f"{final.resolve()}/ holds {', '.join(required_files) or 'its files'}"
    )
    created = [p for p in (dest_dir, *dest_dir.parents) if not p.exists()]  # made for this download only
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {dest_dir}: {e.strerror}") from None
    if final.exists():  # the user's own folder without the release's files: theirs, never replaced
        raise DataError(
            f"{final} exists but does not hold {', '.join(required_files) or 'the release'}; it is left as it is: "
            f"move it away, or {manual}"
        )
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=dest_dir))
    except OSError as e:
        raise DataError(f"cannot write in the data folder {dest_dir} ({e.strerror or e}); {manual}") from None
    succeeded = False
    try:
        archive = work / "archive.zip"
        try:
            _download(url, archive, timeout)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise DataError(f"could not download {url} ({reason}); without network, {manual}") from None
        if md5 is not None:
            got = file_digest(archive, "md5")
            if got != md5:
                raise DataError(f"{url}: MD5 mismatch (expected {md5}, got {got}); the download was removed")
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise DataError(f"{url}: the archive is corrupt at {bad}; it was removed")
                zf.extractall(work / "extracted")
        except zipfile.BadZipFile as e:
            raise DataError(f"{url}: not a readable zip archive ({e}); it was removed") from None
        extracted = work / "extracted" / folder
        missing = [name for name in required_files if not (extracted / name).is_file()]
        if missing:
            raise DataError(f"{url}: the archive has no {folder}/{', '.join(missing)}; it was removed")
        for name, expected in (file_sha256 or {}).items():
            got = file_digest(extracted / name, "sha256")
            if got != expected:
                raise DataError(f"{url}: {folder}/{name} SHA-256 mismatch (expected {expected}, got {got})")
        os.rename(extracted, final)  # fails rather than replace a folder that appeared meanwhile
        succeeded = True
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not succeeded:  # a failed download leaves no folder it made behind
            for path in created:  # innermost first
                with contextlib.suppress(OSError):
                    path.rmdir()
