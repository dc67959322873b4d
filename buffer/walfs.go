package buffer

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// segmentPath is the file of the segment whose first index is index, named
// as tidwall/wal names it.
func segmentPath(dir string, index uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d", index))
}

// walFileIndex parses a name tidwall/wal considers one of its files
// (a segment, or a .START/.END/.TEMP leftover of a truncation).
func walFileIndex(name string) (uint64, bool) {
	if len(name) < 20 {
		return 0, false
	}
	idx, err := strconv.ParseUint(name[:20], 10, 64)
	return idx, err == nil && idx > 0
}

// listSegments returns the first indexes of the log's segment files, sorted.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []uint64
	for _, e := range ents {
		if idx, ok := walFileIndex(e.Name()); ok && len(e.Name()) == 20 && !e.IsDir() {
			segs = append(segs, idx)
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// readFileInto reads a whole file, reusing buf's memory.
func readFileInto(buf []byte, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, err
	}
	n := int(fi.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err = io.ReadFull(f, buf)
	return buf, err
}

// syncDir makes file creations, renames and removals in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func crc32c(b []byte) uint32       { return crc32.Checksum(b, castagnoli) }
func leUint32(b []byte) uint32     { return binary.LittleEndian.Uint32(b) }
func leUint64(b []byte) uint64     { return binary.LittleEndian.Uint64(b) }
func putUint32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func putUint64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }
