package buffer

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

// TestMemoryOverloadSheds: while memory is short every append sheds the
// oldest unread records, never those in flight, and counts them.
func TestMemoryOverloadSheds(t *testing.T) {
	var overloaded atomic.Bool
	dropped := map[Reason]int{}
	m := NewMemory(Options{Limit: 1 << 20, Overloaded: overloaded.Load, OnDrop: func(r Reason, n int) { dropped[r] += n }})
	ctx := context.Background()
	rec := Record{Value: make([]byte, 100)}
	for range 5 {
		if err := m.Append(ctx, ack.InCall(), rec); err != nil {
			t.Fatal(err)
		}
	}
	inflight, _ := m.Read(nil, 2*rec.Size())
	if len(inflight) != 2 {
		t.Fatalf("read %d", len(inflight))
	}
	overloaded.Store(true)
	for range 10 {
		if err := m.Append(ctx, ack.InCall(), rec); err != nil {
			t.Fatal(err)
		}
	}
	// 2 in flight stay; each of the 10 appends shed one older unread record.
	if st := m.Stats(); st.Records != 5 || st.Inflight != 2 || dropped[ReasonOverload] != 10 {
		t.Fatalf("stats %+v, dropped %v", st, dropped)
	}
	overloaded.Store(false)
	if err := m.Append(ctx, ack.InCall(), rec); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Records != 6 || dropped[ReasonOverload] != 10 {
		t.Fatalf("after recovery: stats %+v, dropped %v", st, dropped)
	}
	rest, _ := m.Read(nil, 1<<20)
	if len(rest) != 4 || rest[len(rest)-1].Seq != 16 {
		t.Fatalf("read %d, last seq %d", len(rest), rest[len(rest)-1].Seq)
	}
}
