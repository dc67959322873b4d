package buffer

import (
	"context"
	"errors"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

// TestReviewHybridDiskFull: a hybrid queue's spill fails on a full disk
// (its memory part keeps the records), the reader acknowledges some in
// memory, space is freed, the queue takes appends again. After a Close and
// reopen (and a crash of the reopened queue) every accepted unacknowledged
// record is delivered once, in order.
func TestReviewHybridDiskFull(t *testing.T) {
	for _, crashAfter := range []bool{false, true} {
		fs := newFullFS(t, 4<<20)
		dir := fs.dir
		sz := sizeOf(rec(0))
		opts := Options{SegmentBytes: int64(20 * sz), MemoryLimit: int64(10 * sz)}
		q := open(t, ModeHybrid, dir, opts)
		ctx := context.Background()
		var accepted []int
		v := 0
		for ; v < 30; v++ {
			if err := q.Append(ctx, ack.InCall(), rec(v)); err != nil {
				t.Fatal(err)
			}
			accepted = append(accepted, v)
		}
		fs.fill(t)
		more, next, err := appendUntilRefused(q, v, 1000)
		if err == nil {
			t.Fatal("the spill never failed")
		}
		if !errors.Is(err, ack.ErrWriteFailed) {
			t.Fatal(err)
		}
		accepted, v = append(accepted, more...), next
		// Read and acknowledge all but the last 3 accepted.
		es := drain(t, q, 1<<20)
		if got := values(t, es); !equalInts(got, accepted) {
			t.Fatalf("read: %v", diffInts(got, accepted))
		}
		q.Ack(es[len(es)-4].Seq)
		accepted = accepted[len(accepted)-3:]
		q.Rewind()
		v = fs.free(t, q, v)
		accepted = append(accepted, v)
		for range 40 {
			v++
			if err := q.Append(ctx, ack.InCall(), rec(v)); err != nil {
				t.Fatal(err)
			}
			accepted = append(accepted, v)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		q = open(t, ModeHybrid, dir, opts)
		if got := values(t, drain(t, q, 1<<20)); !equalInts(got, accepted) {
			t.Fatalf("after reopen: %v (%v)", diffInts(got, accepted), got)
		}
		if crashAfter {
			crash(q)
			q.(*Disk).seg.close()
			q.(*Disk).ackFile.Close()
			q = open(t, ModeHybrid, dir, opts)
			if got := values(t, drain(t, q, 1<<20)); !equalInts(got, accepted) {
				t.Fatalf("after crash: %v (%v)", diffInts(got, accepted), got)
			}
		}
		q.Close()
	}
}
