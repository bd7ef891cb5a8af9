"""A mapped file's pages, once read, leave the process's resident memory (prelabel.memory.let_go)."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from prelabel.memory import let_go


def _resident_kb(path: Path) -> int:
    """The resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isalnum() and "-" in line.split(" ", 1)[0]:   # a mapping's header line
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_pages_read_are_let_go_and_read_again(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * (32 * 2**20 // 256))   # 32 MiB
    with open(src, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert int(np.frombuffer(mm, dtype=np.uint8)[::4096].sum()) == 0   # every page touched (byte 0 of each)
        assert _resident_kb(src) >= 30 * 1024
        let_go(mm, 0, 16 * 2**20 + 100)       # the first half (and the page holding its last byte)
        assert 14 * 1024 <= _resident_kb(src) <= 16 * 1024
        let_go(mm, 16 * 2**20 + 100, len(mm))
        assert _resident_kb(src) < 1024
        assert mm[2**20 + 255] == 255 and mm[len(mm) - 1] == 255   # read again from the file
