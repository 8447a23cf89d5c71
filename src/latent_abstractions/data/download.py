"""Resumable download of the official 3dshapes.h5.

The transfer streams into ``<dest>.part`` (kept between attempts and between runs), resumes with an HTTP
``Range`` request after a cut connection, retries with exponential backoff, checks the optional sha256,
validates the HDF5 layout, and only then renames the file to ``dest``. A corrupt or wrong-layout file is
deleted and reported; nothing that looks complete is left behind.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .shapes3d import DatasetError, validate_file

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """The file could not be fetched after all retries."""


def _fetch_into(url: str, part: Path, timeout: float, chunk: int, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (one HTTP request). Raises on a cut connection."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to fetch: the part file is complete
            return
        raise
    with resp:
        if have and resp.status != 206:  # the server ignored Range: start over
            log.warning("%s: server does not support resuming; restarting from byte 0", url)
            have = 0
            part.unlink(missing_ok=True)
        elif have and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            raise DownloadError(
                f"{url}: asked for bytes {have}- but the server sent "
                f"Content-Range {resp.headers.get('Content-Range')!r}"
            )
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with (
            open(part, "ab") as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=part.name,
                disable=not progress,
                mininterval=1,
            ) as bar,
        ):
            received = 0
            while True:
                block = resp.read(chunk)
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
        if length is not None and received < int(length):
            raise ConnectionError(f"connection closed after {have + received} of {total} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    chunk: int = 1 << 20,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` resumably, verify it, and return ``dest``.

    Args:
        url: where the file is.
        dest: final path; the partial download lives at ``dest + '.part'``.
        sha256: expected hex digest, or None to skip the check.
        retries: attempts after the first failure; the wait doubles each time from ``backoff`` seconds.
        timeout: socket timeout per request (seconds).

    Raises:
        DownloadError: if the transfer keeps failing, or at once on an HTTP client error (404 etc.).
        DatasetError: if the file's checksum or HDF5 layout is wrong (the download is deleted).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_into(url, part, timeout, chunk, progress)
            break
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as err:
            code = getattr(err, "code", None)
            if code is not None and 400 <= code < 500 and code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {code} {err.reason}") from err  # a wrong URL won't heal
            if attempt == retries:
                raise DownloadError(f"{url}: download failed after {retries + 1} attempts: {err}") from err
            wait = backoff * 2**attempt
            log.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d, resuming at byte %d)",
                url,
                err,
                wait,
                attempt + 2,
                retries + 1,
                part.stat().st_size if part.exists() else 0,
            )
            time.sleep(wait)
    if sha256:
        h = hashlib.sha256()
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != sha256.lower():
            part.unlink()
            raise DatasetError(
                f"{url}: sha256 {h.hexdigest()} does not match the expected {sha256}; the download was deleted"
            )
    try:
        validate_file(part)
    except DatasetError as err:
        part.unlink()
        raise DatasetError(f"{url}: downloaded file is not a valid 3dshapes.h5 ({err}); it was deleted") from err
    os.replace(part, dest)
    log.info(
        "%s: %d bytes, layout valid%s; saved as %s", url, dest.stat().st_size, ", sha256 ok" if sha256 else "", dest
    )
    return dest
