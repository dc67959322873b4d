package buffer

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

// TestDiskFullRecovers fills a real (tmpfs) file system under a disk queue:
// appends are refused with ack.ErrWriteFailed and the queue says so, and once
// space is freed the same queue accepts again, without a reopen. Every
// accepted record is delivered once, in order, also after a crash and
// reopen (a partial write was cut, not left behind).
func TestDiskFullRecovers(t *testing.T) {
	fs := newFullFS(t, 2<<20)
	opts := Options{SegmentBytes: 64 << 10}
	q := open(t, ModeDisk, fs.dir, opts)
	var accepted []int
	ctx := context.Background()
	v := 0
	for ; v < 200; v++ {
		if err := q.Append(ctx, ack.InCall(), rec(v)); err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, v)
	}
	fs.fill(t)
	more, v, failure := appendUntilRefused(q, v, 100000)
	accepted = append(accepted, more...)
	if !errors.Is(failure, ack.ErrWriteFailed) {
		t.Fatalf("after %d appends on a full disk: %v", len(accepted), failure)
	}
	if err := q.Stats().Err; !errors.Is(err, ack.ErrWriteFailed) {
		t.Fatalf("stats do not report the failure: %v", err)
	}
	if err := q.Append(ctx, ack.InCall(), rec(v)); !errors.Is(err, ack.ErrWriteFailed) {
		t.Fatalf("append while the disk is full: %v", err)
	}
	v++

	v = fs.free(t, q, v)
	accepted = append(accepted, v)
	if err := q.Stats().Err; err != nil {
		t.Fatalf("recovered queue still reports %v", err)
	}
	for range 100 {
		v++
		if err := q.Append(ctx, ack.InCall(), rec(v)); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		accepted = append(accepted, v)
	}
	if got := values(t, drain(t, q, 1<<20)); !equalInts(got, accepted) {
		t.Fatalf("delivered %d records, accepted %d: %v", len(got), len(accepted), diffInts(got, accepted))
	}
	crash(q)
	q = open(t, ModeDisk, fs.dir, opts)
	defer q.Close()
	if got := values(t, drain(t, q, 1<<20)); !equalInts(got, accepted) {
		t.Fatalf("after reopen: %d records, accepted %d: %v", len(got), len(accepted), diffInts(got, accepted))
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// diffInts describes where two sequences part.
func diffInts(got, want []int) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at %d: %d, want %d", i, got[i], want[i])
		}
	}
	return "one is a prefix of the other"
}
