"""A bigWig writer that streams: memory bounded by a block of intervals, not by the genome.

bigWig (Kent et al. 2010, Bioinformatics 26:2204; the layout of UCSC's ``bbiFile.h`` /
``bwgInternal.h``, version 4) holds, after a fixed header, the chromosome B+ tree, the
data sections (zlib-compressed bedGraph items: ``start, end`` uint32 and ``value`` float32,
0-based half-open), an R-tree over the sections, and per zoom level a list of summary records
(``chromId, start, end, validCount`` uint32; ``min, max, sum, sumSquares`` float32) with its
own R-tree. Genome browsers read the zoom levels for zoomed-out views, ``pyBigWig``'s
``stats()`` for every non-exact summary.

Why methray writes the file itself: libBigWig (pyBigWig) builds every zoom level in
``close()`` holding all records of all levels in memory (~46 B per CpG: 2.4 GiB for 48M CpGs;
dpryan79/libBigWig issue 44, open) and keeps a zero sum in the last record of each zoom
block; pybigtools 0.3.0 streams but counts uncovered bases of sparse data as covered in its
zoom records (jackh726/bigtools issue 85, open). Here data sections go to the file as they
fill, and each zoom level's records are computed block by block, compressed and spilled to a
temporary file of their own (a hidden ``.zoom-*`` folder beside the output), then copied
into place at the end. The writer holds one block of intervals, the pieces of each level's
last bin (the coarsest bins are 4 Mb: ~40k CpGs at human density) and the R-tree leaves
(32 B per 1,024 items or records).

Zoom records summarise aligned bins ``[k * r, (k + 1) * r)`` of reduction ``r`` (bases):
``validCount`` is the number of bases with data in the bin, ``sum`` and ``sumSquares`` weigh
each value by its bases, as UCSC's records do. The first reduction is ``first_reduction``
(16 bp: libBigWig's choice for 1 bp CpG intervals, 16x their length), each next level 4x the
last, at most ``zoom_levels`` levels, none wider than the longest chromosome; a level that
needs as many zoom blocks (1,024 records) as the one below ends the list, as in libBigWig
(hg19 chr22's IMR90 CpGs: 6 levels, 16 bp to 16 kb). Readers that summarise a range from the
zoom records prorate the bins cut by its ends; coarser levels than needed would make that
worse (pyBigWig's ``stats()`` picks the coarsest level not wider than the range).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib

import numpy as np

BIGWIG_MAGIC = 0x888FFC26
BPT_MAGIC = 0x78CA8C91  # chromosome B+ tree
CIRTREE_MAGIC = 0x2468ACE0  # R-tree index
VERSION = 4
HEADER_SIZE = 64
ZOOM_HEADER_SIZE = 24
SUMMARY_SIZE = 40
ITEMS_PER_SLOT = 1024  # items per data section and records per zoom block (bedGraphToBigWig's default)
BLOCK_SIZE = 256  # children per R-tree node (bedGraphToBigWig's default)
BEDGRAPH_TYPE = 1
# zlib level 1: 2.5x less CPU than the default 6 (libBigWig's, UCSC's) for a file 2-4% larger
# (1M CpG-like intervals: 1.7 vs 4.3 CPU s, 44.4 vs 43.4 MB); any zlib reader inflates either.
ZLIB_LEVEL = 1

ITEM = np.dtype([("start", "<u4"), ("end", "<u4"), ("value", "<f4")])
RECORD = np.dtype([("chrom", "<u4"), ("start", "<u4"), ("end", "<u4"), ("count", "<u4"),
                   ("min", "<f4"), ("max", "<f4"), ("sum", "<f4"), ("sumsq", "<f4")])
# One R-tree leaf entry per compressed block: the block's range, file offset and size.
LEAF = np.dtype([("chrom0", "<u4"), ("start", "<u4"), ("chrom1", "<u4"), ("end", "<u4"), ("offset", "<u8"), ("size", "<u8")])


class _Level:
    """One zoom level while it is written: its records spill, compressed, to a temporary file."""

    def __init__(self, reduction: int, spill_path: str):
        self.reduction = reduction
        self.spill = open(spill_path, "w+b")
        self.leaves = _Leaves()
        self.records: list[np.ndarray] = []  # records of the current chromosome not yet in a block
        self.held = 0
        self.count = 0
        self.pending: tuple | None = None  # (bins, bases, values) of the last bin's pieces: the next block may add to it
        self.max_block = 0


class BigWigWriter:
    """Write a bigWig from sorted blocks of intervals, streaming (module docstring).

    Parameters
    ----------
    path
        Local output path, written in place (callers rename a complete file into place:
        :func:`methray.tracks.bigwig_writer`). Zoom records spill beside it while it is written.
    chroms
        ``[(name, length), ...]`` in the order the data come; the B+ tree needs them in byte
        order of their names (``tracks.ordered_chroms(..., "sorted")``).
    zoom_levels
        Most zoom levels (10, as bedGraphToBigWig).
    first_reduction
        Bin size of the finest zoom level, in bp (about 16x the typical interval's length).

    Raises
    ------
    ValueError
        ``chroms`` not in byte order of their names.
    """

    def __init__(self, path: str, chroms: list[tuple[str, int]], zoom_levels: int = 10, first_reduction: int = 16):
        self.names = [c for c, _ in chroms]
        self.sizes = np.array([int(n) for _, n in chroms], np.int64)
        self.index = {c: i for i, c in enumerate(self.names)}
        self.max_levels = zoom_levels
        self.fh = open(path, "w+b")
        self.spill_dir = tempfile.mkdtemp(prefix=".zoom-", dir=os.path.dirname(os.path.abspath(path)))
        self.levels = self._make_levels(first_reduction)
        self.leaves = _Leaves()
        self.sections = 0
        self.max_block = 0
        self.items = np.empty(0, ITEM)  # the current chromosome's items not yet in a section
        self.chrom, self.last_end = -1, -1
        self.bases = 0
        self.total = np.zeros(2)  # sum, sum of squares (each value weighed by its bases)
        self.lo, self.hi = np.inf, -np.inf
        self.fh.write(b"\0" * (HEADER_SIZE + ZOOM_HEADER_SIZE * zoom_levels + SUMMARY_SIZE))
        self.chrom_tree_offset = self.fh.tell()
        self.fh.write(_chrom_tree(self.names, self.sizes, self.chrom_tree_offset))
        self.data_offset = self.fh.tell()
        self.fh.write(b"\0" * 8)  # the number of sections, known at the end

    def add(self, chrom: str, starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> None:
        """Append intervals of one chromosome.

        Parameters
        ----------
        starts, ends
            ``(N,)`` integers, 0-based half-open, sorted, not overlapping, after every interval
            added before, within the contig.
        values
            ``(N,)``, stored as float32 (bit for bit if float32 already: -0.0 stays).

        Raises
        ------
        ValueError
            A contig not in the writer's list or out of its order, or intervals empty,
            unsorted, overlapping, before the last block's end or past the contig's end.
        """
        if not len(starts):
            return
        starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
        if chrom not in self.index or (self.index[chrom], int(starts[0])) < (self.chrom, self.last_end):
            raise ValueError(f"bigWig block {chrom}:{int(starts[0])} is not in sorted chromosome order")
        ix = self.index[chrom]
        if starts[0] < 0 or ends[-1] > self.sizes[ix] or not (np.all(ends > starts) and np.all(starts[1:] >= ends[:-1])):
            raise ValueError(f"bigWig block {chrom}:{int(starts[0])}-{int(ends[-1])}: intervals empty, unsorted, overlapping "
                             f"or past the contig's end ({int(self.sizes[ix])})")
        if ix != self.chrom:
            self._end_chrom()
            self.chrom = ix
        self.last_end = int(ends[-1])
        items = np.empty(len(starts), ITEM)
        items["start"], items["end"], items["value"] = starts, ends, np.asarray(values, np.float32)
        for level in self.levels:
            self._summarise(level, items)
        self.items = np.concatenate([self.items, items]) if len(self.items) else items
        full = len(self.items) // ITEMS_PER_SLOT * ITEMS_PER_SLOT
        for a in range(0, full, ITEMS_PER_SLOT):
            self._write_section(self.items[a:a + ITEMS_PER_SLOT])
        self.items = self.items[full:]

    def abort(self) -> None:
        """Stop without finishing the file (the caller removes it); spilled records go."""
        self._release()

    def _release(self) -> None:
        self.fh.close()
        for level in self.levels:
            level.spill.close()
        shutil.rmtree(self.spill_dir, ignore_errors=True)

    def close(self) -> None:
        """Write the last section and records, the indexes, the zoom levels and the header."""
        try:
            self._end_chrom()
            index_offset = self.fh.tell()
            self.fh.write(_rtree(self.leaves.array(), index_offset))
            zooms = []
            for i, level in enumerate(self.levels):
                # A level needing as many zoom blocks as the one below ends the list (libBigWig's
                # rule): coarser bins would only make readers prorate more.
                if level.count == 0 or (i and -(-level.count // ITEMS_PER_SLOT) == -(-self.levels[i - 1].count // ITEMS_PER_SLOT)):
                    break
                zoom_offset = self.fh.tell()
                self.fh.write(struct.pack("<I", level.count))
                leaves = level.leaves.array()
                leaves["offset"] += zoom_offset + 4
                level.spill.seek(0)
                shutil.copyfileobj(level.spill, self.fh, 1 << 20)
                zoom_index = self.fh.tell()
                self.fh.write(_rtree(leaves, zoom_index))
                zooms.append((level.reduction, zoom_offset, zoom_index))
                self.max_block = max(self.max_block, level.max_block)
            self.fh.write(struct.pack("<I", BIGWIG_MAGIC))  # UCSC checks the signature at both ends
            summary_offset = HEADER_SIZE + ZOOM_HEADER_SIZE * self.max_levels
            self.fh.seek(0)
            self.fh.write(struct.pack("<IHHQQQHHQQIQ", BIGWIG_MAGIC, VERSION, len(zooms), self.chrom_tree_offset, self.data_offset,
                                      index_offset, 0, 0, 0, summary_offset, self.max_block, 0))
            for reduction, data, index in zooms:
                self.fh.write(struct.pack("<IIQQ", reduction, 0, data, index))
            self.fh.seek(summary_offset)
            lo, hi = (self.lo, self.hi) if self.bases else (0.0, 0.0)
            self.fh.write(struct.pack("<Qdddd", self.bases, lo, hi, *self.total))
            self.fh.seek(self.data_offset)
            self.fh.write(struct.pack("<Q", self.sections))
        finally:
            self._release()

    # -- data sections ----------------------------------------------------------------------

    def _write_section(self, items: np.ndarray) -> None:
        # Totals section by section: sections, unlike add()'s blocks, are the same however the
        # caller cuts the data, so the file's bytes are too.
        span = (items["end"] - items["start"]).astype(np.float64)
        v = items["value"].astype(np.float64)
        self.bases += int(span.sum())
        self.total += ((span * v).sum(), (span * v * v).sum())
        self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
        head = struct.pack("<IIIIIBBH", self.chrom, int(items["start"][0]), int(items["end"][-1]), 0, 0, BEDGRAPH_TYPE, 0, len(items))
        raw = head + items.tobytes()
        self.leaves.append(self._block(self.fh, raw, self.chrom, int(items["start"][0]), int(items["end"][-1])))
        self.sections += 1
        self.max_block = max(self.max_block, len(raw))

    @staticmethod
    def _block(fh, raw: bytes, chrom: int, start: int, end: int) -> tuple:
        """Compress ``raw`` to ``fh``; its R-tree leaf entry (offset in ``fh``)."""
        packed = zlib.compress(raw, ZLIB_LEVEL)
        offset = fh.tell()
        fh.write(packed)
        return chrom, start, chrom, end, offset, len(packed)

    def _end_chrom(self) -> None:
        if len(self.items):
            self._write_section(self.items)
            self.items = np.empty(0, ITEM)
        for level in self.levels:
            if level.pending is not None:
                level.records.append(self._records(level.reduction, *level.pending, np.zeros(1, np.int64)))
                level.held += 1
                level.pending = None
            self._write_records(level, final=True)

    # -- zoom levels ------------------------------------------------------------------------

    def _make_levels(self, reduction: int) -> list[_Level]:
        longest = int(self.sizes.max(initial=0))
        levels = []
        for i in range(self.max_levels):
            if reduction > longest:
                break
            levels.append(_Level(reduction, os.path.join(self.spill_dir, f"level{i}")))
            reduction *= 4
        return levels

    def _summarise(self, level: _Level, items: np.ndarray) -> None:
        """Add a block's items to the level's bins; every bin but the last one is complete.

        The last bin may go on in the next block: its pieces wait (``level.pending``) and are
        summed with the rest of the bin, so each record is computed from its whole bin at
        once, whatever the block boundaries.
        """
        r = level.reduction
        start, end = items["start"].astype(np.int64), items["end"].astype(np.int64)
        value = items["value"].astype(np.float64)
        first, last = start // r, (end - 1) // r
        if np.any(last > first):  # intervals across bin edges: one piece per bin they touch
            pieces = last - first + 1
            owner = np.repeat(np.arange(len(start)), pieces)
            bins = first[owner] + np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
            bases = np.minimum(end[owner], (bins + 1) * r) - np.maximum(start[owner], bins * r)
            value = value[owner]
        else:
            bins, bases = first, end - start
        if level.pending is not None:
            bins, bases, value = (np.concatenate([p, x]) for p, x in zip(level.pending, (bins, bases, value)))
        at = np.concatenate([[0], np.flatnonzero(np.diff(bins)) + 1])
        tail = at[-1]
        level.pending = (bins[tail:], bases[tail:], value[tail:])
        if len(at) > 1:
            level.records.append(self._records(r, bins[:tail], bases[:tail], value[:tail], at[:-1]))
            level.held += len(at) - 1
        if level.held >= ITEMS_PER_SLOT:
            self._write_records(level, final=False)

    def _records(self, r: int, bins: np.ndarray, bases: np.ndarray, value: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Zoom records of reduction ``r`` for the bins starting at indexes ``at`` of the pieces."""
        rec = np.empty(len(at), RECORD)
        rec["chrom"] = self.chrom
        rec["start"] = bins[at] * r
        rec["end"] = np.minimum((bins[at] + 1) * r, self.sizes[self.chrom])
        weighted = bases * value
        rec["count"] = np.add.reduceat(bases, at)
        rec["sum"], rec["sumsq"] = np.add.reduceat(weighted, at), np.add.reduceat(weighted * value, at)
        rec["min"], rec["max"] = np.minimum.reduceat(value, at), np.maximum.reduceat(value, at)
        return rec

    def _write_records(self, level: _Level, final: bool) -> None:
        if not level.held:
            return
        recs = np.concatenate(level.records)
        full = len(recs) if final else len(recs) // ITEMS_PER_SLOT * ITEMS_PER_SLOT
        for a in range(0, full, ITEMS_PER_SLOT):
            block = recs[a:a + ITEMS_PER_SLOT]
            raw = block.tobytes()
            level.leaves.append(self._block(level.spill, raw, int(block["chrom"][0]), int(block["start"][0]), int(block["end"][-1])))
            level.max_block = max(level.max_block, len(raw))
            level.count += len(block)
        level.records = [recs[full:]] if full < len(recs) else []
        level.held = len(recs) - full


class _Leaves:
    """R-tree leaf entries, appended one block at a time (32 B each, in a doubling array)."""

    def __init__(self):
        self.buf, self.n = np.empty(1024, LEAF), 0

    def append(self, entry: tuple) -> None:
        if self.n == len(self.buf):
            self.buf = np.concatenate([self.buf, np.empty(len(self.buf), LEAF)])
        self.buf[self.n] = entry
        self.n += 1

    def array(self) -> np.ndarray:
        return self.buf[:self.n].copy()


def _chrom_tree(names: list[str], sizes: np.ndarray, offset: int) -> bytes:
    """The chromosome B+ tree, to be written at file offset ``offset``: keys are the names
    (NUL-padded), values ``(chromId, size)``.

    Leaves of up to ``BLOCK_SIZE`` names under as many levels of non-leaf nodes as needed,
    root first, every node but a level's last one full. The names must be in byte order
    (readers search the tree by key).
    """
    keys = [n.encode() for n in names]
    if keys != sorted(keys):
        raise ValueError("bigWig chromosome names must be in byte order (tracks.ordered_chroms 'sorted')")
    key_size = max((len(k) for k in keys), default=1)
    block = max(1, min(len(keys), BLOCK_SIZE))
    head = struct.pack("<IIIIQQ", BPT_MAGIC, block, key_size, 8, len(keys), 0)
    # Entries per level bottom-up: level 0 the names, level k+1 the first name of each node of level k.
    firsts = [list(range(len(keys)))]
    while len(firsts[-1]) > block:
        firsts.append(firsts[-1][::block])
    entry = key_size + 8
    starts, pos = {}, offset + len(head)
    for k in reversed(range(len(firsts))):
        starts[k] = pos
        pos += -(-len(firsts[k]) // block) * 4 + len(firsts[k]) * entry
    out = bytearray(head)
    for k in reversed(range(len(firsts))):
        level = firsts[k]
        for a in range(0, len(level), block):
            part = level[a:a + block]
            out += struct.pack("<BBH", int(k == 0), 0, len(part))
            for j, name in enumerate(part, start=a):
                out += keys[name].ljust(key_size, b"\0")
                # a leaf entry is (chromId, size); a non-leaf one the offset of child node j
                out += struct.pack("<II", name, int(sizes[name])) if k == 0 else struct.pack("<Q", starts[k - 1] + j * (4 + block * entry))
    return bytes(out)


def _rtree(leaves: np.ndarray, offset: int) -> bytes:
    """An R-tree index (``cirTree``) over blocks, to be written at file offset ``offset``.

    Leaves hold ``(chrom0, start, chrom1, end, offset, size)`` per block, non-leaf nodes the
    range and file offset of each child node, ``BLOCK_SIZE`` entries per node, root first.
    """
    n = len(leaves)
    head_size = 48
    if n == 0:
        return struct.pack("<IIQIIIIQII", CIRTREE_MAGIC, BLOCK_SIZE, 0, 0, 0, 0, 0, offset, ITEMS_PER_SLOT, 0) + struct.pack("<BBH", 1, 0, 0)
    # Ranges per level bottom-up: level 0 = the blocks, level k+1 = nodes of level k.
    ranges = [np.stack([leaves["chrom0"], leaves["start"], leaves["chrom1"], leaves["end"]], 1).astype(np.int64)]
    while len(ranges[-1]) > BLOCK_SIZE:
        r = ranges[-1]
        at = np.arange(0, len(r), BLOCK_SIZE)
        last = np.minimum(at + BLOCK_SIZE, len(r)) - 1
        ranges.append(np.stack([r[at, 0], r[at, 1], r[last, 2], r[last, 3]], 1))
    top = ranges[-1]
    # Node levels top-down: the root holds ``ranges[-1]``; a level holding entries ``ranges[k]``
    # has ceil(len / BLOCK_SIZE) nodes; non-leaf entries are 24 bytes, leaf entries 32.
    levels = list(range(len(ranges) - 1, -1, -1))
    starts, pos = {}, offset + head_size
    for k in levels:
        starts[k] = pos
        nodes = -(-len(ranges[k]) // BLOCK_SIZE)
        pos += nodes * 4 + len(ranges[k]) * (32 if k == 0 else 24)
    out = bytearray(struct.pack("<IIQIIIIQII", CIRTREE_MAGIC, BLOCK_SIZE, n, int(top[0, 0]), int(top[0, 1]), int(top[-1, 2]), int(top[-1, 3]),
                                offset, ITEMS_PER_SLOT, 0))
    for k in levels:
        r = ranges[k]
        for a in range(0, len(r), BLOCK_SIZE):
            part = r[a:a + BLOCK_SIZE]
            out += struct.pack("<BBH", int(k == 0), 0, len(part))
            if k == 0:
                entries = leaves[a:a + BLOCK_SIZE]
                out += entries.tobytes()
            else:
                child = np.empty(len(part), [("r", "<u4", 4), ("offset", "<u8")])
                child["r"] = part
                # child j of this level is node j of level k-1: nodes before it are full
                j = np.arange(a, a + len(part))
                child_entries = 32 if k - 1 == 0 else 24
                child["offset"] = starts[k - 1] + j * (4 + BLOCK_SIZE * child_entries)
                out += child.tobytes()
    return bytes(out)
