package buffer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tidwall/wal"
)

// Earlier versions kept a queue in a tidwall/wal log: segment files named
// by 20 digits (and .START/.END leftovers of a truncation), each entry the
// same bytes an entry is today (entry.go). Opening such a directory moves
// its unacknowledged entries into segment files, reading the old log through
// tidwall/wal's public API only, and then removes the old files. A crash in
// before the move is complete leaves the old files authoritative: the move
// starts over. Once it is complete a marker file says so, and a crash while
// the old files are removed only leaves the removal to finish.

// removeOldFile removes a file of the old log (a test makes it fail, as a
// crash would stop the removals).
var removeOldFile = os.Remove

// oldFormatFiles lists the tidwall/wal files in dir.
func oldFormatFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var old []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || len(n) < 20 || strings.HasSuffix(n, segSuffix) {
			continue
		}
		if _, err := strconv.ParseUint(n[:20], 10, 64); err == nil {
			old = append(old, n)
		}
	}
	return old, nil
}

// migrateOldFormat moves the entries after ack of a tidwall/wal log in dir
// into segment files, if there is such a log.
func migrateOldFormat(dir string, ack uint64, segBytes int64, log *slog.Logger) error {
	old, err := oldFormatFiles(dir)
	if err != nil || len(old) == 0 {
		return err
	}
	marker := filepath.Join(dir, movedMarker)
	if _, err := os.Stat(marker); err == nil {
		// The move was complete: only the removal of the old files was cut
		// short, and what is left of them is no log any more.
		return removeOldFormat(dir, marker)
	}
	// Segment files next to old ones are from a move cut short.
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	for _, first := range segs {
		if err := os.Remove(segmentPath(dir, first)); err != nil {
			return err
		}
	}
	l, err := wal.Open(dir, &wal.Options{NoSync: true, LogFormat: wal.Binary, SegmentCacheSize: 2,
		NoCopy: true, AllowEmpty: true, DirPerms: 0o750, FilePerms: 0o640})
	if err != nil {
		return fmt.Errorf("reading the buffer of an earlier version (%w); start that version once to repair and drain it", err)
	}
	moved, err := moveEntries(l, dir, ack, segBytes)
	if cerr := l.Close(); err == nil && cerr != nil && !errors.Is(cerr, wal.ErrClosed) {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("moving the buffer of an earlier version: %w", err)
	}
	// From here on the segment files are the log, whatever a crash leaves
	// of the old files.
	if err := os.WriteFile(marker, nil, 0o640); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := removeOldFormat(dir, marker); err != nil {
		return err
	}
	log.Info("moved the buffer of an earlier version into this version's segment files", "records", moved)
	return nil
}

// movedMarker is the file that says a move is complete and the old files
// are being removed.
const movedMarker = "moved-from-wal"

// removeOldFormat removes the old files of a completed move, then its marker.
func removeOldFormat(dir, marker string) error {
	old, err := oldFormatFiles(dir)
	if err != nil {
		return err
	}
	for _, n := range old {
		if err := removeOldFile(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := os.Remove(marker); err != nil {
		return err
	}
	return syncDir(dir)
}

// moveEntries copies the entries after ack from l into new segment files
// and syncs them.
func moveEntries(l *wal.Log, dir string, ack uint64, segBytes int64) (int, error) {
	first, err := l.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := l.LastIndex()
	if err != nil {
		return 0, err
	}
	seg, err := openSegLog(dir, segBytes, 0, func(uint64, []byte) {}, func(string, int, int64) {})
	if err != nil {
		return 0, err
	}
	defer seg.close()
	var b wbuf
	start := max(first, ack+1)
	flush := func(next uint64) error {
		if len(b.lens) == 0 {
			return nil
		}
		if _, err := seg.write(next-uint64(len(b.lens)), b.frames, b.lens); err != nil {
			return err
		}
		b.frames, b.lens = b.frames[:0], b.lens[:0]
		return seg.sync()
	}
	for i := start; i <= last; i++ {
		data, err := l.Read(i)
		if err != nil {
			return 0, fmt.Errorf("entry %d: %w", i, err)
		}
		at := len(b.frames)
		b.frames = append(b.frames, 0, 0, 0, 0)
		b.frames = append(b.frames, data...)
		putUint32(b.frames[at:], uint32(len(data)))
		b.lens = append(b.lens, int32(len(b.frames)-at))
		if len(b.frames) >= spillChunk {
			if err := flush(i + 1); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(last + 1); err != nil {
		return 0, err
	}
	return int(max(last+1, start) - start), syncDir(dir)
}
