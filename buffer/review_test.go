package buffer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/ack"
)

// writeAckFile sets the ack file of dir to ack, as a lagging save left it.
func writeAckFile(t *testing.T, dir string, ack uint64) {
	t.Helper()
	var b [ackFileLen]byte
	b[0] = 1
	putUint64(b[1:], ack)
	putUint32(b[9:], crc32c(b[:9]))
	if err := os.WriteFile(filepath.Join(dir, ackFileName), b[:], 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestReviewLaggingAckAfterTruncation: the maintainer removes acknowledged
// segments at once but saves the ack point at most every ackSaveEvery, so a
// kill -9 can leave the first segment starting past ack+1. Every
// unacknowledged record must still be delivered after the reopen (resending
// part of the first segment is allowed).
func TestReviewLaggingAckAfterTruncation(t *testing.T) {
	for _, savedAck := range []uint64{0, 100} {
		dir := t.TempDir()
		sz := sizeOf(rec(0))
		opts := Options{SegmentBytes: int64(10 * sz)}
		q := open(t, ModeDisk, dir, opts)
		appendN(t, q, 0, 200)
		got := drain(t, q, 1<<20)
		wantRange(t, got, 0, 200)
		q.Ack(got[184].Seq)
		deadline := time.Now().Add(5 * time.Second)
		for {
			if segs, _ := listSegments(dir); (len(segs) > 0 && segs[0] > 150) || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		crash(q)
		segs, _ := listSegments(dir)
		if segs[0] <= savedAck+1 {
			t.Fatalf("first segment %d", segs[0])
		}
		// The crash came before the ack point's save.
		writeAckFile(t, dir, savedAck)
		q = open(t, ModeDisk, dir, opts)
		vs := values(t, drain(t, q, 1<<20))
		q.Close()
		// From the first segment's first entry on, all in order.
		want := int(segs[0]) - 1
		if len(vs) == 0 || vs[0] != want || vs[len(vs)-1] != 199 || len(vs) != 200-want {
			t.Errorf("ack file at %d, first segment %d: delivered %v, want %d..199", savedAck, segs[0], vs, want)
		}
	}
}

// TestReviewEmptyFirstSegment: an empty segment file before the others
// (created, then its first write failed or the process died; a hybrid queue
// then starts its next segment at a later Seq) must not stop the queue from
// opening.
func TestReviewEmptyFirstSegment(t *testing.T) {
	dir := t.TempDir()
	q := open(t, ModeHybrid, dir, Options{})
	appendN(t, q, 0, 4)
	got := drain(t, q, 1<<20)
	q.Ack(got[3].Seq)
	appendN(t, q, 4, 7)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	// The file a failed spill of Seq 1 left behind.
	if err := os.WriteFile(segmentPath(dir, 1), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("open panicked: %v", r)
			}
		}()
		q = open(t, ModeHybrid, dir, Options{})
	}()
	defer q.Close()
	wantRange(t, drain(t, q, 1<<20), 4, 7)
}

// TestReviewMigrationCrashWhileRemovingOldFiles: the move of a tidwall/wal
// log is complete and synced, and the process dies while removing the old
// files (the first ones are gone). The next open must deliver every
// unacknowledged record.
func TestReviewMigrationCrashWhileRemovingOldFiles(t *testing.T) {
	dir := t.TempDir()
	writeOldFormat(t, dir)
	writeAckFile(t, dir, 10)
	if old, _ := oldFormatFiles(dir); len(old) < 2 {
		t.Fatalf("old files: %v", old)
	}
	// The process dies after removing the first old file.
	removed := 0
	removeOldFile = func(path string) error {
		if removed++; removed > 1 {
			return errors.New("killed")
		}
		return os.Remove(path)
	}
	defer func() { removeOldFile = os.Remove }()
	if q, err := OpenDisk(Options{Dir: dir, SegmentBytes: 1 << 10, Logger: quiet()}); err == nil {
		q.Close()
		t.Fatal("open survived the crash")
	}
	removeOldFile = os.Remove
	q := open(t, ModeDisk, dir, Options{SegmentBytes: 1 << 10})
	defer q.Close()
	wantRange(t, drain(t, q, 1<<20), 10, 100)
}

// TestReviewOneEntryReadIsBounded: reading one entry back from the log
// (maxBytes smaller than the entry) should read about that entry, not the
// markEvery-1 entries before it and up to the next mark after it: the
// records point into the read buffer, so whatever is in flight keeps it.
func TestReviewOneEntryReadIsBounded(t *testing.T) {
	dir := t.TempDir()
	const big = 1 << 20
	opts := Options{SegmentBytes: 64 << 20, MemoryLimit: 1}
	q := open(t, ModeDisk, dir, opts)
	defer q.Close()
	for i := range 32 {
		r := rec(i)
		r.Value = append(r.Value, make([]byte, big)...)
		if err := q.Append(context.Background(), ack.InCall(), r); err != nil {
			t.Fatal(err)
		}
	}
	var worst uint64
	for i := range 32 {
		var before, after runtimeMem
		before.read()
		got, err := q.Read(nil, 1)
		after.read()
		if err != nil || len(got) != 1 {
			t.Fatalf("read %d: %d entries, %v", i, len(got), err)
		}
		worst = max(worst, after.alloc-before.alloc)
	}
	if worst > 4*big {
		t.Fatalf("reading one entry of %d bytes allocated %d bytes", big, worst)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)) }

// TestReviewSeqNotReusedAfterEmptyTail: the tail segment is full, the next
// append creates a new segment file, the maintainer removes the fully
// acknowledged one before it, and the process dies before the first write
// to the new file and before the ack point is saved. The reopened queue must
// not hand out again Seqs that were already delivered and acknowledged.
func TestReviewSeqNotReusedAfterEmptyTail(t *testing.T) {
	dir := t.TempDir()
	sz := sizeOf(rec(0))
	opts := Options{SegmentBytes: int64(10 * sz)}
	q := open(t, ModeDisk, dir, opts)
	appendN(t, q, 0, 30)
	got := drain(t, q, 1<<20)
	q.Ack(got[len(got)-1].Seq)
	delivered := got[len(got)-1].Seq
	crash(q)
	q.(*Disk).seg.close()
	q.(*Disk).ackFile.Close()
	next := q.(*Disk).seg.next()
	// The state the crash left: the new, empty tail only; the ack point as
	// saved a while before.
	segs, _ := listSegments(dir)
	for _, s := range segs {
		os.Remove(segmentPath(dir, s))
	}
	if err := os.WriteFile(segmentPath(dir, next), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	writeAckFile(t, dir, 5)
	q = open(t, ModeDisk, dir, opts)
	defer q.Close()
	r := rec(100)
	seq, err := q.(*Disk).AppendSeq(context.Background(), ack.InCall(), &r)
	if err != nil {
		t.Fatal(err)
	}
	if seq <= delivered {
		t.Fatalf("new record got Seq %d, already delivered up to %d", seq, delivered)
	}
}
