package state

// A structural check of the database file before bbolt maps it. bbolt
// trusts its pages: a damaged page can send it into an endless descent
// (branch pages that point at each other), past the end of the mapping, or
// into a huge allocation, none of which an error or a recover can stop. So
// Open first walks the file itself, bounds-checking every page the current
// meta page reaches, each at most once, and refuses the file if anything is
// out of place. The layout read here is bbolt's file format version 2.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"
)

// bbolt file format constants (go.etcd.io/bbolt/internal/common).
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elemSize         = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	metaSize         = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	bucketHeaderSize = 16 // root pgid u64, sequence u64
	flagBranch       = 0x01
	flagLeaf         = 0x02
	flagFreelist     = 0x10
	leafBucket       = 0x01
	noFreelist       = ^uint64(0)
	// maxFileSize bounds the file read (whole, once, at Open) for the
	// check: the bounded buckets need a few tens of MiB at most (the
	// records for others are bounded by the core's MaxRecordBytes, 8 MiB
	// by default); a larger file is not one this package wrote.
	maxFileSize = 256 << 20
	maxDepth    = 64
)

// bbolt writes its pages in the machine's byte order.
var ne = binary.NativeEndian

type boltMeta struct {
	pageSize uint64
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// parseMeta reads the meta page at off, or reports why it is not valid.
func parseMeta(file []byte, off int) (boltMeta, error) {
	var m boltMeta
	if off < 0 || off+pageHeaderSize+metaSize > len(file) {
		return m, errors.New("meta page beyond the end of the file")
	}
	b := file[off+pageHeaderSize : off+pageHeaderSize+metaSize]
	if ne.Uint32(b[0:]) != boltMagic {
		return m, errors.New("not a bbolt file (bad magic)")
	}
	if v := ne.Uint32(b[4:]); v != boltVersion {
		return m, fmt.Errorf("bbolt file format %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if ne.Uint64(b[56:]) != h.Sum64() {
		return m, errors.New("meta page checksum mismatch")
	}
	m = boltMeta{pageSize: uint64(ne.Uint32(b[8:])), root: ne.Uint64(b[16:]), freelist: ne.Uint64(b[32:]),
		pgid: ne.Uint64(b[40:]), txid: ne.Uint64(b[48:])}
	return m, nil
}

// checkFile validates the file at path, holding the same lock bbolt takes
// (so no other process writes while it reads; it fails with ErrInUse after
// timeout). A missing or empty file is a new database and passes.
func checkFile(ctx context.Context, path string, timeout time.Duration) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockFile(ctx, f, timeout); err != nil {
		return err
	}
	defer unlockFile(f)
	file, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return err
	}
	if len(file) == 0 {
		return nil
	}
	if len(file) > maxFileSize {
		return fmt.Errorf("%w: file larger than %d bytes", ErrCorrupt, maxFileSize)
	}
	if err := checkBolt(file); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

// checkBolt validates a whole bbolt file held in memory.
func checkBolt(file []byte) error {
	m0, err0 := parseMeta(file, 0)
	var m1 boltMeta
	err1 := errors.New("no second meta page")
	if err0 == nil {
		m1, err1 = parseMeta(file, int(min(m0.pageSize, maxFileSize)))
	} else {
		for ps := 512; ps <= 1<<16 && err1 != nil; ps *= 2 {
			m1, err1 = parseMeta(file, ps)
		}
	}
	m := m0
	switch {
	case err0 != nil && err1 != nil:
		return fmt.Errorf("no valid meta page: %w", err0)
	case err0 != nil || err1 == nil && m1.txid > m0.txid:
		m = m1
	}
	ps := m.pageSize
	switch {
	case ps < 512 || ps > 1<<16 || ps&(ps-1) != 0:
		return fmt.Errorf("page size %d", ps)
	case m.pgid < 2 || m.pgid > uint64(len(file))/ps:
		return fmt.Errorf("meta page claims %d pages, the file holds %d", m.pgid, uint64(len(file))/ps)
	case m.root < 2 || m.root >= m.pgid:
		return fmt.Errorf("root page %d outside [2, %d)", m.root, m.pgid)
	}
	c := checker{file: file, ps: ps, pgid: m.pgid, seen: make(map[uint64]bool)}
	if m.freelist != noFreelist {
		if err := c.checkFreelist(m.freelist); err != nil {
			return err
		}
	}
	buf, err := c.page(m.root)
	if err != nil {
		return err
	}
	return c.tree(buf, 0)
}

type checker struct {
	file []byte
	ps   uint64
	pgid uint64
	seen map[uint64]bool
}

// page returns page id with its overflow pages, marking them used: a page
// reached twice means a cycle or a shared subtree.
func (c *checker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= c.pgid {
		return nil, fmt.Errorf("page %d outside [2, %d)", id, c.pgid)
	}
	off := id * c.ps
	hdr := c.file[off : off+pageHeaderSize]
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d identifies as %d", id, got)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if overflow >= c.pgid-id {
		return nil, fmt.Errorf("page %d: %d overflow pages beyond the last page", id, overflow)
	}
	for p := id; p <= id+overflow; p++ {
		if c.seen[p] {
			return nil, fmt.Errorf("page %d reached twice", p)
		}
		c.seen[p] = true
	}
	return c.file[off : off+(overflow+1)*c.ps], nil
}

func (c *checker) checkFreelist(id uint64) error {
	buf, err := c.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags := ne.Uint16(buf[8:]); flags != flagFreelist {
		return fmt.Errorf("freelist page %d has flags %#x", id, flags)
	}
	idx, count := uint64(0), uint64(ne.Uint16(buf[10:]))
	if count == 0xffff {
		if len(buf) < pageHeaderSize+8 {
			return fmt.Errorf("freelist page %d truncated", id)
		}
		idx, count = 1, ne.Uint64(buf[pageHeaderSize:])
	}
	if count > uint64(len(buf)) || pageHeaderSize+(idx+count)*8 > uint64(len(buf)) {
		return fmt.Errorf("freelist page %d: %d entries do not fit", id, count)
	}
	for i := idx; i < idx+count; i++ {
		if p := ne.Uint64(buf[pageHeaderSize+i*8:]); p < 2 || p >= c.pgid {
			return fmt.Errorf("freelist page %d lists page %d outside [2, %d)", id, p, c.pgid)
		}
	}
	return nil
}

// tree checks a branch or leaf page (buf starts at its header; an inline
// bucket's page is the rest of its value) and everything below it.
func (c *checker) tree(buf []byte, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("tree deeper than %d", maxDepth)
	}
	if len(buf) < pageHeaderSize {
		return errors.New("page shorter than its header")
	}
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	id := ne.Uint64(buf)
	if pageHeaderSize+count*elemSize > len(buf) {
		return fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	switch flags {
	case flagBranch:
		if count == 0 {
			return fmt.Errorf("branch page %d is empty", id)
		}
		for i := range count {
			off := pageHeaderSize + i*elemSize
			e := buf[off : off+elemSize]
			pos, ksize := int(ne.Uint32(e)), int(ne.Uint32(e[4:]))
			if off+pos+ksize > len(buf) || pos+ksize < pos {
				return fmt.Errorf("branch page %d: key %d out of bounds", id, i)
			}
			child, err := c.page(ne.Uint64(e[8:]))
			if err != nil {
				return fmt.Errorf("branch page %d: %w", id, err)
			}
			if err := c.tree(child, depth+1); err != nil {
				return err
			}
		}
	case flagLeaf:
		for i := range count {
			off := pageHeaderSize + i*elemSize
			e := buf[off : off+elemSize]
			lflags, pos := ne.Uint32(e), int(ne.Uint32(e[4:]))
			ksize, vsize := int(ne.Uint32(e[8:])), int(ne.Uint32(e[12:]))
			start, end := off+pos, off+pos+ksize+vsize
			if pos < 0 || ksize < 0 || vsize < 0 || end > len(buf) || end < start {
				return fmt.Errorf("leaf page %d: element %d out of bounds", id, i)
			}
			if lflags&leafBucket == 0 {
				continue
			}
			v := buf[start+ksize : end]
			if len(v) < bucketHeaderSize {
				return fmt.Errorf("leaf page %d: bucket header of %d bytes", id, len(v))
			}
			var sub []byte
			if root := ne.Uint64(v); root == 0 {
				sub = v[bucketHeaderSize:] // an inline bucket: one leaf page
				if len(sub) < pageHeaderSize || ne.Uint16(sub[8:]) != flagLeaf {
					return fmt.Errorf("leaf page %d: inline bucket %d is not a leaf page", id, i)
				}
			} else {
				var err error
				if sub, err = c.page(root); err != nil {
					return fmt.Errorf("leaf page %d: bucket: %w", id, err)
				}
			}
			if err := c.tree(sub, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("page %d has flags %#x", id, flags)
	}
	return nil
}
