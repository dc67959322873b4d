package buffer

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestTicketReportsAfterWrite appends under tickets from many goroutines:
// when a ticket reports, its record must already be synced; and once every
// ticket has reported, a crash must keep every record reported durable.
func TestTicketReportsAfterWrite(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10}
	q := open(t, ModeDisk, dir, opts)
	d := q.(*Disk)
	var early atomic.Int64
	checkSynced := func(seq uint64) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.synced < seq {
			early.Add(1)
		}
	}
	var mu sync.Mutex
	durable := map[int]bool{}
	reported := 0
	syncDone := 0
	var wg sync.WaitGroup
	for a := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				v := a*1000 + i
				var seq uint64 // set before Release, so before onDone runs
				tk := ack.NewTicket(func(failed bool) {
					checkSynced(seq)
					mu.Lock()
					defer mu.Unlock()
					reported++
					durable[v] = !failed
				})
				r := rec(v)
				seq, err := q.AppendSeq(context.Background(), ack.Deferred(tk), &r)
				if err != nil {
					t.Errorf("append %d: %v", v, err)
				}
				if tk.Release() {
					checkSynced(seq)
					mu.Lock()
					syncDone++
					durable[v] = !tk.Failed()
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	testkit.WaitFor(t, 10*time.Second, "every ticket reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return reported+syncDone == 1000
	})
	if n := early.Load(); n > 0 {
		t.Fatalf("%d tickets reported before their record was synced", n)
	}
	seen := crashAndReopen(t, q, dir, opts)
	mu.Lock()
	defer mu.Unlock()
	for v, ok := range durable {
		if !ok {
			t.Errorf("record %d reported failed", v)
		} else if !seen[v] {
			t.Fatalf("record %d reported durable but lost in the crash", v)
		}
	}
	if len(durable) != 1000 {
		t.Fatalf("%d of 1000 tickets reported", len(durable))
	}
}

// TestTicketReportsFailure breaks the WAL under a queue: an append under a
// ticket must then report failure, not success.
func TestTicketReportsFailure(t *testing.T) {
	q := open(t, ModeDisk, t.TempDir(), Options{})
	defer q.Close()
	// The first write creates a segment file, in a directory that is gone.
	d := q.(*Disk)
	d.seg.mu.Lock()
	d.seg.dir = filepath.Join(t.TempDir(), "gone")
	d.seg.mu.Unlock()

	result := make(chan bool, 1)
	tk := ack.NewTicket(func(failed bool) { result <- failed })
	r := rec(1)
	if _, err := q.AppendSeq(context.Background(), ack.Deferred(tk), &r); err != nil {
		t.Fatalf("append: %v", err)
	}
	// The write may fail before the release: then the ticket says so itself.
	if tk.Release() {
		if !tk.Failed() {
			t.Fatal("a failed write was reported durable")
		}
	} else {
		select {
		case failed := <-result:
			if !failed {
				t.Fatal("a failed write was reported durable")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ticket never reported")
		}
	}
	if err := q.Append(context.Background(), ack.InCall(), rec(2)); !errors.Is(err, ack.ErrWriteFailed) {
		t.Fatalf("append after a failed write: %v", err)
	}
}

// TestNoWaitKeepsRecords appends without waiting and closes the queue: a
// graceful close writes them.
func TestNoWaitKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	q := open(t, ModeDisk, dir, Options{})
	ctx := context.Background()
	for i := range 100 {
		if err := q.Append(ctx, ack.NoWait(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(ctx, ack.NoWait(), rec(100)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	q = open(t, ModeDisk, dir, Options{})
	defer q.Close()
	got := drain(t, q, 1<<20)
	if len(got) != 100 {
		t.Fatalf("%d of 100 records after reopen", len(got))
	}
	for i, e := range got {
		if valueOf(t, e) != i {
			t.Fatalf("record %d is %d", i, valueOf(t, e))
		}
	}
}

// TestSharedCommitter appends to three disk queues sharing one committer,
// in the call and under tickets, closes one of them midway, and requires
// every accepted record on disk after a crash of the others.
func TestSharedCommitter(t *testing.T) {
	c := NewCommitter()
	defer c.Close()
	opts := Options{SegmentBytes: 4 << 10, Committer: c}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	qs := make([]Queue, len(dirs))
	for i, dir := range dirs {
		qs[i] = open(t, ModeDisk, dir, opts)
	}
	var mu sync.Mutex
	accepted := make([]map[int]bool, len(qs))
	for i := range accepted {
		accepted[i] = map[int]bool{}
	}
	var tickets sync.WaitGroup
	var wg sync.WaitGroup
	for a := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				v, qi := a*1000+i, (a+i)%len(qs)
				keep := func() {
					mu.Lock()
					accepted[qi][v] = true
					mu.Unlock()
				}
				if a%2 == 0 {
					if err := qs[qi].Append(context.Background(), ack.InCall(), rec(v)); err == nil {
						keep()
					} else if !errors.Is(err, ErrClosed) {
						t.Errorf("append: %v", err)
					}
					continue
				}
				tickets.Add(1)
				tk := ack.NewTicket(func(failed bool) {
					if !failed {
						keep()
					}
					tickets.Done()
				})
				r := rec(v)
				_, err := qs[qi].AppendSeq(context.Background(), ack.Deferred(tk), &r)
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("append: %v", err)
				}
				if tk.Release() {
					if err == nil && !tk.Failed() {
						keep()
					}
					tickets.Done()
				}
			}
		}()
	}
	testkit.WaitFor(t, 10*time.Second, "records in queue 0", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted[0]) >= 50
	})
	if err := qs[0].Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	tickets.Wait()
	for i, dir := range dirs {
		var seen map[int]bool
		if i == 0 {
			q := open(t, ModeDisk, dir, Options{})
			seen = map[int]bool{}
			for _, e := range drain(t, q, 1<<20) {
				seen[valueOf(t, e)] = true
			}
			q.Close()
		} else {
			seen = crashAndReopen(t, qs[i], dir, Options{})
		}
		for v := range accepted[i] {
			if !seen[v] {
				t.Fatalf("queue %d: accepted record %d lost", i, v)
			}
		}
		if len(accepted[i]) == 0 {
			t.Fatalf("queue %d accepted nothing", i)
		}
	}
}

// TestRoundTellsNewestFirst: a committer round tells its tickets newest
// append first across its queues, so that a broker connection, which writes
// its PUBACKs once the oldest pending one is done, is woken once per round
// with all of them done rather than once per partition.
func TestRoundTellsNewestFirst(t *testing.T) {
	// Not running: the test plays the round itself.
	c := &Committer{kick: make(chan struct{}, 1)}
	qs := []Queue{
		open(t, ModeDisk, t.TempDir(), Options{Committer: c}),
		open(t, ModeDisk, t.TempDir(), Options{Committer: c}),
	}
	var mu sync.Mutex
	var told []int
	for i, qi := range []int{0, 1, 0, 1, 1, 0} {
		tk := ack.NewTicket(func(bool) {
			mu.Lock()
			told = append(told, i)
			mu.Unlock()
		})
		r := rec(i)
		if _, err := qs[qi].AppendSeq(context.Background(), ack.Deferred(tk), &r); err != nil {
			t.Fatal(err)
		}
		if tk.Release() {
			t.Fatal("a ticket reported before its round")
		}
	}
	var writes []groupWrite
	for _, q := range qs {
		d := q.(*Disk)
		d.mu.Lock()
		writes = append(writes, d.beginLocked())
		d.mu.Unlock()
	}
	for i := range writes {
		writes[i].put()
		writes[i].sync()
	}
	c.tell(writes, nil)
	if want := []int{5, 4, 3, 2, 1, 0}; !slices.Equal(told, want) {
		t.Fatalf("tickets told in order %v, want %v", told, want)
	}
	for _, q := range qs {
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
