"""A small pure-Python writer (and reader) for BoltDB / bbolt files.

Trivy keeps its vulnerability DB in a bbolt file. Tests and the offline demo need a
fixture DB, and the ``boltdb`` package on PyPI writes bad meta checksums, so this module
writes the format itself. It writes a whole database in one go (no transactions, no
updates): a tree of nested buckets whose leaves are byte values.

File layout written here (bbolt format version 2, page size 4096):

- page 0 and 1: meta pages (magic, version, page size, root bucket, freelist page id,
  page count, txid, FNV-64a checksum of the fields before it);
- page 2: an empty freelist page;
- then each bucket's pages, children before parents: leaf pages (key/value elements,
  sorted by key) and, when a bucket does not fit in one page, branch pages above them.

A bucket with no sub-buckets and a small serialised size is stored inline in its
parent's leaf value (root page id 0), as bbolt itself does.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Union

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF_FLAG = 0x01

PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
LEAF_ELEMENT = struct.Struct("<IIII")  # flags, pos, ksize, vsize
BRANCH_ELEMENT = struct.Struct("<IIQ")  # pos, ksize, pgid
BUCKET_HEADER = struct.Struct("<QQ")  # root pgid, sequence
META_FIELDS = struct.Struct("<IIIIQQQQQ")  # magic..txid, checksummed
META_CHECKSUM = struct.Struct("<Q")

# A bucket is a mapping of byte keys to byte values or to nested buckets.
# (Union, not |: the recursive alias needs a string forward reference.)
Tree = Mapping[bytes, Union[bytes, "Tree"]]


class BoltFormatError(ValueError):
    """A file that is not a bbolt database this module can read."""


def fnv64a(data: bytes) -> int:
    """FNV-1a 64-bit hash: bbolt's meta page checksum."""
    value = 0xCBF29CE484222325
    for byte in data:
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


@dataclass(frozen=True)
class _Element:
    key: bytes
    value: bytes
    flags: int  # BUCKET_LEAF_FLAG for a nested bucket


class _PageWriter:
    """Allocates page ids and collects page images in id order."""

    def __init__(self, first_pgid: int) -> None:
        self.next_pgid = first_pgid
        self.pages: list[bytes] = []

    def add(self, flags: int, count: int, body: bytes) -> int:
        """Store one node (spanning overflow pages if needed) and return its page id."""
        pgid = self.next_pgid
        total = PAGE_HEADER.size + len(body)
        npages = -(-total // PAGE_SIZE)
        header = PAGE_HEADER.pack(pgid, flags, count, npages - 1)
        self.pages.append((header + body).ljust(npages * PAGE_SIZE, b"\0"))
        self.next_pgid += npages
        return pgid


def _leaf_body(elements: list[_Element]) -> bytes:
    """Element headers followed by key/value data; pos is relative to each header."""
    headers = bytearray()
    data = bytearray()
    data_start = LEAF_ELEMENT.size * len(elements)
    for index, element in enumerate(elements):
        pos = data_start + len(data) - index * LEAF_ELEMENT.size
        headers += LEAF_ELEMENT.pack(element.flags, pos, len(element.key), len(element.value))
        data += element.key + element.value
    return bytes(headers + data)


def _branch_body(children: list[tuple[bytes, int]]) -> bytes:
    headers = bytearray()
    data = bytearray()
    data_start = BRANCH_ELEMENT.size * len(children)
    for index, (key, pgid) in enumerate(children):
        pos = data_start + len(data) - index * BRANCH_ELEMENT.size
        headers += BRANCH_ELEMENT.pack(pos, len(key), pgid)
        data += key
    return bytes(headers + data)


def _chunks(elements: list[_Element]) -> list[list[_Element]]:
    """Split sorted elements into groups that each fit one page (a lone big one overflows)."""
    limit = PAGE_SIZE - PAGE_HEADER.size
    groups: list[list[_Element]] = [[]]
    size = 0
    for element in elements:
        element_size = LEAF_ELEMENT.size + len(element.key) + len(element.value)
        if groups[-1] and size + element_size > limit:
            groups.append([])
            size = 0
        groups[-1].append(element)
        size += element_size
    return groups


def _write_tree(pages: _PageWriter, elements: list[_Element]) -> int:
    """Write one bucket's B+tree (leaves, then branch levels) and return its root page id."""
    level = [
        (group[0].key if group else b"", pages.add(LEAF_PAGE, len(group), _leaf_body(group)))
        for group in _chunks(elements)
    ]
    while len(level) > 1:
        # Children per branch page assuming keys up to 64 bytes; longer ones overflow.
        fanout = (PAGE_SIZE - PAGE_HEADER.size) // (BRANCH_ELEMENT.size + 64)
        level = [
            (group[0][0], pages.add(BRANCH_PAGE, len(group), _branch_body(group)))
            for group in (level[i : i + fanout] for i in range(0, len(level), fanout))
        ]
    return level[0][1]


def _elements(pages: _PageWriter, tree: Tree) -> list[_Element]:
    """The sorted leaf elements of a bucket, writing its sub-buckets first."""
    result = []
    for key in sorted(tree):
        if not isinstance(key, bytes) or not key:
            raise TypeError(f"bucket keys must be non-empty bytes, got {key!r}")
        value = tree[key]
        if isinstance(value, bytes):
            result.append(_Element(key, value, 0))
        else:
            result.append(_Element(key, _bucket_value(pages, value), BUCKET_LEAF_FLAG))
    return result


def _bucket_value(pages: _PageWriter, tree: Tree) -> bytes:
    """A nested bucket's value in its parent: header (+ the inline page when small)."""
    has_sub_buckets = any(not isinstance(v, bytes) for v in tree.values())
    if not has_sub_buckets:
        elements = _elements(pages, tree)
        inline = PAGE_HEADER.pack(0, LEAF_PAGE, len(elements), 0) + _leaf_body(elements)
        # bbolt inlines a bucket whose page is at most a quarter of a page.
        if len(inline) <= PAGE_SIZE // 4:
            return BUCKET_HEADER.pack(0, 0) + inline
    root = _write_tree(pages, _elements(pages, tree))
    return BUCKET_HEADER.pack(root, 0)


def _meta_page(pgid: int, root: int, freelist: int, page_count: int) -> bytes:
    fields = META_FIELDS.pack(MAGIC, VERSION, PAGE_SIZE, 0, root, 0, freelist, page_count, pgid)
    meta = fields + META_CHECKSUM.pack(fnv64a(fields))
    return (PAGE_HEADER.pack(pgid, META_PAGE, 0, 0) + meta).ljust(PAGE_SIZE, b"\0")


def encode(tree: Tree) -> bytes:
    """The bytes of a bbolt file whose top-level buckets are ``tree``'s entries.

    Every top-level value must itself be a bucket (bbolt's root holds only buckets).
    """
    for key, value in tree.items():
        if isinstance(value, bytes):
            raise TypeError(f"top-level entry {key!r} must be a bucket, not a value")
    freelist_pgid = 2
    pages = _PageWriter(first_pgid=3)
    root = _write_tree(pages, _elements(pages, tree))
    page_count = pages.next_pgid
    head = [
        _meta_page(0, root, freelist_pgid, page_count),
        _meta_page(1, root, freelist_pgid, page_count),
        PAGE_HEADER.pack(freelist_pgid, FREELIST_PAGE, 0, 0).ljust(PAGE_SIZE, b"\0"),
    ]
    return b"".join(head + pages.pages)


def write(path: Path, tree: Tree) -> None:
    """Write ``tree`` as a bbolt database file at ``path`` (replacing it)."""
    path.write_bytes(encode(tree))


# --- reader: enough to check what the writer produced -------------------------------

Bucket = dict[bytes, "bytes | Bucket"]


class _Reader:
    """Walks the pages of one in-memory bbolt file."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def root(self) -> Bucket:
        metas = [self._meta(pgid) for pgid in (0, 1)]
        root, _ = max(metas, key=lambda meta: meta[1])  # the newer transaction wins
        return self._tree(root)

    def _meta(self, pgid: int) -> tuple[int, int]:
        """(root page id, txid) of a meta page whose magic, version and checksum are right."""
        offset = pgid * PAGE_SIZE + PAGE_HEADER.size
        if len(self.data) < offset + META_FIELDS.size + META_CHECKSUM.size:
            raise BoltFormatError("file too small for bbolt meta pages")
        fields = self.data[offset : offset + META_FIELDS.size]
        magic, version, page_size, _, root, _, _, _, txid = META_FIELDS.unpack(fields)
        (checksum,) = META_CHECKSUM.unpack_from(self.data, offset + META_FIELDS.size)
        if magic != MAGIC or version != VERSION or page_size != PAGE_SIZE:
            raise BoltFormatError(f"meta page {pgid}: not a bbolt v2 file with 4096-byte pages")
        if checksum != fnv64a(fields):
            raise BoltFormatError(f"meta page {pgid}: checksum mismatch")
        return root, txid

    def _tree(self, pgid: int) -> Bucket:
        offset = pgid * PAGE_SIZE
        if offset + PAGE_HEADER.size > len(self.data):
            raise BoltFormatError(f"page {pgid} lies beyond the end of the file")
        return self._node(self.data, offset)

    def _node(self, data: bytes, offset: int) -> Bucket:
        _, flags, count, _ = PAGE_HEADER.unpack_from(data, offset)
        result: Bucket = {}
        for index in range(count):
            # Branch and leaf element headers are both 16 bytes.
            at = offset + PAGE_HEADER.size + index * LEAF_ELEMENT.size
            if flags == BRANCH_PAGE:
                _, _, child = BRANCH_ELEMENT.unpack_from(data, at)
                result.update(self._tree(child))
            elif flags == LEAF_PAGE:
                element_flags, pos, ksize, vsize = LEAF_ELEMENT.unpack_from(data, at)
                key = data[at + pos : at + pos + ksize]
                value = data[at + pos + ksize : at + pos + ksize + vsize]
                is_bucket = element_flags & BUCKET_LEAF_FLAG
                result[key] = self._bucket(value) if is_bucket else value
            else:
                raise BoltFormatError(f"unexpected page flags {flags:#x} at offset {offset}")
        return result

    def _bucket(self, value: bytes) -> Bucket:
        root, _ = BUCKET_HEADER.unpack_from(value)
        if root == 0:  # inline bucket: its leaf page follows the header
            return self._node(value, BUCKET_HEADER.size)
        return self._tree(root)


def decode(data: bytes) -> Bucket:
    """Parse bbolt bytes into nested dicts (buckets) of bytes (values)."""
    return _Reader(data).root()


def read(path: Path) -> Bucket:
    """The nested buckets of a bbolt file, after checking its meta pages."""
    return decode(path.read_bytes())
