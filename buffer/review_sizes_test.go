package buffer

import (
	"context"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

// TestReviewEntrySizes: records larger than the read batch, the cache
// budget and the segment size, and records whose frame is exactly the
// segment size, survive reads, a crash and reopens in order.
func TestReviewEntrySizes(t *testing.T) {
	for _, mode := range durableModes {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			r0 := rec(0)
			frame := int64(len(appendEntry(nil, &r0, 0)) + frameHdrLen)
			opts := Options{SegmentBytes: frame * 3, MemoryLimit: 2 * frame, ReadCache: NewCacheBudget(frame)}
			q := open(t, mode, dir, opts)
			var want []int
			for i := range 40 {
				r := rec(i)
				if i%5 == 0 {
					r.Value = append(r.Value, make([]byte, 5000*(i%3))...)
				}
				if err := q.Append(context.Background(), ack.InCall(), r); err != nil {
					t.Fatal(err)
				}
				want = append(want, i)
			}
			got := values(t, drain(t, q, 1))
			if !equalInts(got, want) {
				t.Fatalf("read: %v", diffInts(got, want))
			}
			q.Rewind()
			got = values(t, drain(t, q, 100))
			if !equalInts(got, want) {
				t.Fatalf("after rewind: %v", diffInts(got, want))
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				q = open(t, mode, dir, opts)
				got = values(t, drain(t, q, 7000))
				if !equalInts(got, want) {
					t.Fatalf("after reopen: %v", diffInts(got, want))
				}
				appendN(t, q, len(want), len(want)+1)
				want = append(want, len(want))
				q.Close()
			}
		})
	}
}
