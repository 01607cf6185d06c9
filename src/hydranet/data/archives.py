"""Tar archives (plain, gzip, bzip2, xz) streamed member by member and checked to their last byte.

Python's tarfile stops silently where a download was cut between two members or at a damaged header, and
never checks a gzip trailer (CRC, length); `tar_files` turns each of those into one UserError naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zlib
from collections import deque
from pathlib import Path
from typing import BinaryIO, Callable

from hydranet.errors import UserError

# Decompressed here rather than by tarfile's stream mode, because these readers check the trailer at the end.
DECOMPRESSORS: dict[bytes, Callable[[BinaryIO], BinaryIO]] = {
    b"\x1f\x8b": lambda raw: gzip.GzipFile(fileobj=raw), b"BZh": bz2.BZ2File, b"\xfd7zXZ\x00": lzma.LZMAFile,
}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")  # what the image sources accept as an archive
END_MARKER = 2 * tarfile.BLOCKSIZE  # a complete tar ends with two zero blocks


class _Recording:
    """A read-only stream that counts the bytes read through it and keeps the last few chunks, so the block
    where tarfile stopped can be looked at after it stopped (tarfile reads ahead in 10 KiB chunks)."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.position = stream, 0
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=4)

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.recent.append((self.position, data))
        self.position += len(data)
        return data

    def bytes_at(self, start: int, size: int) -> bytes:
        """Bytes [start, start + size) as far as the kept chunks hold them."""
        kept = [(begin, data) for begin, data in self.recent if begin + len(data) > start]
        if not kept or kept[0][0] > start:
            return b""
        joined = b"".join(data for _, data in kept)
        return joined[start - kept[0][0]:start - kept[0][0] + size]

    def drain(self) -> None:
        """Read to the end: a compressed stream checks its CRC and length there (EOFError if cut short)."""
        while self.read(1 << 20):
            pass


def tar_files(path: Path, wanted: Callable[[str], bool]) -> list[tuple[str, bytes]]:
    """(member name, bytes) of every regular file whose name `wanted` accepts, in archive order, read as a
    stream (nothing extracted to disk). Cut short, damaged or not a tar archive: a UserError naming `path`.

    The completeness check costs no second pass: only the padding after the end-of-archive marker is read on.
    """
    try:
        with open(path, "rb") as raw:
            magic = raw.read(6)
            raw.seek(0)
            decompress = next((d for m, d in DECOMPRESSORS.items() if magic.startswith(m)), None)
            stream = _Recording(decompress(raw) if decompress else raw)
            with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
                items = [(m.name, archive.extractfile(m).read()) for m in archive if m.isfile() and wanted(m.name)]
                end = archive.offset
            _check_end(stream, end)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path}: archive is truncated or corrupt ({type(err).__name__}: {err}); download it again") from None
    return items


def _check_end(stream: _Recording, end: int) -> None:
    """tarfile stops without a word at a missing or damaged header; a complete archive has zeros there."""
    first = stream.bytes_at(end, tarfile.BLOCKSIZE)
    stream.drain()
    if first != bytes(tarfile.BLOCKSIZE) or stream.position < end + END_MARKER:
        raise tarfile.ReadError(f"no end-of-archive marker at byte {end}, where the members stop")
