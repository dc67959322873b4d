package buffer

import (
	"testing"

	"github.com/tidwall/wal"
)

// writeOldFormat writes records 0 to 99 into dir as a tidwall/wal log, the
// format of earlier versions.
func writeOldFormat(t *testing.T, dir string) {
	t.Helper()
	l, err := wal.Open(dir, &wal.Options{NoSync: true, LogFormat: wal.Binary, SegmentSize: 2 << 10, AllowEmpty: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		r := rec(i)
		if err := l.Write(uint64(i+1), appendEntry(nil, &r, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOldFormatMigrates opens a queue directory an earlier version left: a
// tidwall/wal log and an ack point. The unacknowledged records are
// delivered, in order, from this version's segment files, and the old files
// are gone.
func TestOldFormatMigrates(t *testing.T) {
	dir := t.TempDir()
	writeOldFormat(t, dir)
	writeAckFile(t, dir, 30)

	opts := Options{SegmentBytes: 1 << 10}
	q := open(t, ModeDisk, dir, opts)
	if old, _ := oldFormatFiles(dir); len(old) != 0 {
		t.Fatalf("old files left: %v", old)
	}
	got := drain(t, q, 1<<20)
	wantRange(t, got, 30, 100)
	if got[0].Seq != 31 {
		t.Fatalf("first seq %d, want 31", got[0].Seq)
	}
	appendN(t, q, 100, 101)
	if more := drain(t, q, 1<<20); len(more) != 1 || more[0].Seq != 101 {
		t.Fatalf("after the move: %+v", more)
	}
	q.Close()
	q = open(t, ModeDisk, dir, opts)
	defer q.Close()
	wantRange(t, drain(t, q, 1<<20), 30, 101)
}
