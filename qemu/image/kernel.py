"""Unpack a bzImage's XZ payload to a plain vmlinux and check it has a PVH entry.

Why: under TCG the kernel's own decompressor costs seconds; QEMU can boot an uncompressed ELF
vmlinux directly through its PVH entry point (with -bios qboot.rom), which halves boot time.
Exit status 0 = vmlinux written and PVH-bootable; 1 = not possible (use the bzImage).

Usage: python3 qemu/image/kernel.py BZIMAGE VMLINUX
"""

from __future__ import annotations

import lzma
import struct
import sys
from pathlib import Path

XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"
PT_NOTE = 4
# Xen ELF note type carrying the 32-bit PVH entry point (xen/include/public/elfnote.h).
XEN_ELFNOTE_PHYS32_ENTRY = 18


def unpack_xz_payload(bzimage: bytes) -> bytes | None:
    """The first XZ stream in the bzImage that decompresses to an ELF file, if any."""
    start = bzimage.find(XZ_MAGIC)
    while start != -1:
        try:
            data = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
        except lzma.LZMAError:
            data = b""
        if data.startswith(ELF_MAGIC):
            return data
        start = bzimage.find(XZ_MAGIC, start + 1)
    return None


def has_pvh_note(elf: bytes) -> bool:
    """True if a PT_NOTE segment of this ELF64 holds the Xen PHYS32_ENTRY note."""
    if elf[4] != 2 or elf[5] != 1:  # ELFCLASS64, little endian
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + index * phentsize
        )
        if p_type == PT_NOTE and _notes_have_pvh(elf[p_offset : p_offset + p_filesz]):
            return True
    return False


def _notes_have_pvh(notes: bytes) -> bool:
    offset = 0
    while offset + 12 <= len(notes):
        namesz, descsz, note_type = struct.unpack_from("<III", notes, offset)
        name = notes[offset + 12 : offset + 12 + namesz].rstrip(b"\x00")
        if name == b"Xen" and note_type == XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        offset += 12 + _align4(namesz) + _align4(descsz)
    return False


def _align4(size: int) -> int:
    return (size + 3) & ~3


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    vmlinux = unpack_xz_payload(Path(argv[1]).read_bytes())
    if vmlinux is None:
        print("kernel.py: no XZ-compressed ELF payload in the bzImage", file=sys.stderr)
        return 1
    if not has_pvh_note(vmlinux):
        print("kernel.py: vmlinux has no PVH entry note", file=sys.stderr)
        return 1
    Path(argv[2]).write_bytes(vmlinux)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
