package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/ack"
)

// drops counts OnDrop calls by reason.
type drops struct {
	mu sync.Mutex
	n  map[Reason]int
}

func (d *drops) fn(r Reason, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[Reason]int{}
	}
	d.n[r] += n
}

func (d *drops) get(r Reason) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[r]
}

func (d *drops) total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := 0
	for _, n := range d.n {
		t += n
	}
	return t
}

var allModes = []Mode{ModeMemory, ModeDisk, ModeHybrid}

// open opens a queue of mode in dir with quiet logging unless opts has a logger.
func open(t testing.TB, mode Mode, dir string, opts Options) Queue {
	t.Helper()
	opts.Mode = mode
	opts.Dir = dir
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	}
	q, err := Open(opts)
	if err != nil {
		t.Fatalf("open %s: %v", mode, err)
	}
	return q
}

func rec(i int) Record {
	return Record{Key: []byte(fmt.Sprintf("k%06d", i)), Value: []byte(fmt.Sprintf("value-%06d", i)), Time: int64(i)}
}

func valueOf(t testing.TB, e Entry) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(string(e.Value), "value-%d", &i); err != nil {
		t.Fatalf("entry %d: bad value %q", e.Seq, e.Value)
	}
	return i
}

func appendN(t testing.TB, q Queue, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := q.Append(context.Background(), ack.InCall(), rec(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// drain reads everything readable now, maxBytes at a time.
func drain(t testing.TB, q Queue, maxBytes int) []Entry {
	t.Helper()
	var all []Entry
	for {
		got, err := q.Read(nil, maxBytes)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(got) == 0 {
			return all
		}
		all = append(all, got...)
	}
}

func values(t testing.TB, es []Entry) []int {
	out := make([]int, len(es))
	for i, e := range es {
		out[i] = valueOf(t, e)
	}
	return out
}

func wantRange(t testing.TB, es []Entry, from, to int) {
	t.Helper()
	vs := values(t, es)
	if len(vs) != to-from {
		t.Fatalf("got %d entries %v, want values %d..%d", len(vs), vs, from, to-1)
	}
	for i, v := range vs {
		if v != from+i {
			t.Fatalf("entry %d has value %d, want %d (all: %v)", i, v, from+i, vs)
		}
	}
}

func TestOrderAckRewind(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			q := open(t, mode, t.TempDir(), Options{})
			defer q.Close()
			appendN(t, q, 0, 10)
			sz := sizeOf(rec(0))
			got, err := q.Read(nil, 3*sz)
			if err != nil {
				t.Fatal(err)
			}
			wantRange(t, got, 0, 3)
			if got[0].Seq != 1 || got[2].Seq != 3 {
				t.Fatalf("seqs %d..%d, want 1..3", got[0].Seq, got[2].Seq)
			}
			if string(got[1].Key) != "k000001" || got[1].Time != 1 {
				t.Fatalf("entry 1 = %+v", got[1])
			}
			if got, _ := q.Read(nil, 1); len(got) != 1 {
				t.Fatalf("read with tiny maxBytes returned %d entries, want 1", len(got))
			}
			if s := q.Stats(); s.Records != 10 || s.Inflight != 4 || s.Bytes != int64(10*sz) {
				t.Fatalf("stats %+v", s)
			}
			if err := q.Ack(2); err != nil {
				t.Fatal(err)
			}
			q.Rewind()
			wantRange(t, drain(t, q, 1<<20), 2, 10)
			q.Ack(10)
			if s := q.Stats(); s != (Stats{}) {
				t.Fatalf("stats after acking all: %+v", s)
			}
			appendN(t, q, 10, 12)
			got = drain(t, q, 1<<20)
			wantRange(t, got, 10, 12)
			if got[0].Seq != 11 {
				t.Fatalf("seq after ack-all = %d, want 11", got[0].Seq)
			}
		})
	}
}

func TestReadyAndClosed(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			q := open(t, mode, t.TempDir(), Options{})
			appendN(t, q, 0, 1)
			select {
			case <-q.Ready():
			case <-time.After(time.Second):
				t.Fatal("no ready signal")
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if err := q.Append(context.Background(), ack.InCall(), rec(1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("append after close: %v", err)
			}
		})
	}
}

func TestConcurrentAppenders(t *testing.T) {
	const appenders, each = 100, 40
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			// A small memory limit and segment size make the hybrid queue spill
			// and the disk queue cycle segments and truncate while this runs.
			q := open(t, mode, t.TempDir(), Options{SegmentBytes: 16 << 10, MemoryLimit: 8 << 10})
			defer q.Close()
			var wg sync.WaitGroup
			for a := range appenders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						v := make([]byte, 8)
						binary.BigEndian.PutUint32(v, uint32(a))
						binary.BigEndian.PutUint32(v[4:], uint32(i))
						if err := q.Append(context.Background(), ack.InCall(), Record{Value: v}); err != nil {
							t.Errorf("append: %v", err)
							return
						}
					}
				}()
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			next := make([]int, appenders)
			total, lastSeq := 0, uint64(0)
			deadline := time.After(30 * time.Second)
			for total < appenders*each {
				got, err := q.Read(nil, 4096)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range got {
					if e.Seq <= lastSeq {
						t.Fatalf("seq %d after %d", e.Seq, lastSeq)
					}
					lastSeq = e.Seq
					a, i := binary.BigEndian.Uint32(e.Value), int(binary.BigEndian.Uint32(e.Value[4:]))
					if i != next[a] {
						t.Fatalf("appender %d: got %d, want %d", a, i, next[a])
					}
					next[a]++
					total++
				}
				if len(got) > 0 {
					q.Ack(got[len(got)-1].Seq)
					continue
				}
				select {
				case <-q.Ready():
				case <-deadline:
					t.Fatalf("read %d of %d", total, appenders*each)
				}
			}
			<-done
			if got := drain(t, q, 1<<20); len(got) != 0 {
				t.Fatalf("%d extra entries", len(got))
			}
			if s := q.Stats(); s != (Stats{}) {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestOverflowDropOldest(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			var dr drops
			sz := int64(sizeOf(rec(0)))
			q := open(t, mode, t.TempDir(), Options{Limit: 10 * sz, Overflow: DropOldest, OnDrop: dr.fn, MemoryLimit: 4 * sz})
			defer q.Close()
			appendN(t, q, 0, 10)
			inflight, _ := q.Read(nil, int(3*sz)) // 0..2 in flight
			wantRange(t, inflight, 0, 3)
			appendN(t, q, 10, 15) // evicts 3..7, never 0..2
			if n := dr.get(ReasonQueueFull); n != 5 {
				t.Fatalf("dropped %d, want 5", n)
			}
			wantRange(t, drain(t, q, 1<<20), 8, 15)
			q.Rewind()
			got := drain(t, q, 1<<20)
			want := []int{0, 1, 2, 8, 9, 10, 11, 12, 13, 14}
			if fmt.Sprint(values(t, got)) != fmt.Sprint(want) {
				t.Fatalf("after rewind got %v, want %v", values(t, got), want)
			}
			// Everything in flight: a new record cannot make room.
			if err := q.Append(context.Background(), ack.InCall(), rec(15)); !errors.Is(err, ack.ErrFull) {
				t.Fatalf("append with all in flight: %v", err)
			}
			q.Ack(got[len(got)-1].Seq)
			delivered := len(got)
			if appended, dropped := 16, dr.total(); delivered+dropped != appended {
				t.Fatalf("delivered %d + dropped %d != appended %d", delivered, dropped, appended)
			}
			if s := q.Stats(); s != (Stats{}) {
				t.Fatalf("stats %+v", s)
			}
			// A record larger than the limit.
			big := Record{Value: make([]byte, 11*sz)}
			if err := q.Append(context.Background(), ack.InCall(), big); !errors.Is(err, ack.ErrFull) || dr.get(ReasonTooLarge) != 1 {
				t.Fatalf("too large: %v, drops %v", err, dr.n)
			}
		})
	}
}

func TestOverflowDropNew(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			var dr drops
			sz := int64(sizeOf(rec(0)))
			q := open(t, mode, t.TempDir(), Options{Limit: 10 * sz, Overflow: DropNew, OnDrop: dr.fn})
			defer q.Close()
			accepted := 0
			for i := range 15 {
				err := q.Append(context.Background(), ack.InCall(), rec(i))
				switch {
				case err == nil:
					accepted++
				case !errors.Is(err, ack.ErrFull):
					t.Fatal(err)
				}
			}
			if accepted != 10 || dr.get(ReasonQueueFull) != 5 {
				t.Fatalf("accepted %d, dropped %d", accepted, dr.get(ReasonQueueFull))
			}
			got := drain(t, q, 1<<20)
			wantRange(t, got, 0, 10)
			if len(got)+dr.total() != 15 {
				t.Fatalf("delivered %d + dropped %d != 15", len(got), dr.total())
			}
		})
	}
}

func TestOverflowBlock(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			var dr drops
			sz := int64(sizeOf(rec(0)))
			q := open(t, mode, t.TempDir(), Options{Limit: 4 * sz, Overflow: Block, BlockTimeout: 5 * time.Second, OnDrop: dr.fn})
			defer q.Close()
			appendN(t, q, 0, 4)
			var unblocked atomic.Bool
			errc := make(chan error, 1)
			go func() {
				err := q.Append(context.Background(), ack.InCall(), rec(4))
				unblocked.Store(true)
				errc <- err
			}()
			time.Sleep(50 * time.Millisecond)
			if unblocked.Load() {
				t.Fatal("append did not block")
			}
			got, _ := q.Read(nil, int(sz))
			q.Ack(got[0].Seq)
			if err := <-errc; err != nil {
				t.Fatalf("blocked append: %v", err)
			}
			wantRange(t, drain(t, q, 1<<20), 1, 5)

			// Nothing acknowledges: the timeout refuses the record.
			q2 := open(t, mode, t.TempDir(), Options{Limit: 4 * sz, Overflow: Block, BlockTimeout: 50 * time.Millisecond, OnDrop: dr.fn})
			defer q2.Close()
			appendN(t, q2, 0, 4)
			start := time.Now()
			if err := q2.Append(context.Background(), ack.InCall(), rec(4)); !errors.Is(err, ack.ErrFull) {
				t.Fatalf("append after timeout: %v", err)
			}
			if time.Since(start) < 40*time.Millisecond || dr.get(ReasonQueueFull) != 1 {
				t.Fatalf("returned after %v, drops %v", time.Since(start), dr.n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := q2.Append(ctx, ack.InCall(), rec(5)); !errors.Is(err, ack.ErrFull) || dr.get(ReasonQueueFull) != 2 {
				t.Fatalf("append with cancelled ctx: %v", err)
			}
			if got := drain(t, q2, 1<<20); len(got)+dr.get(ReasonQueueFull) != 6 {
				t.Fatalf("delivered %d + dropped %d != 6", len(got), dr.get(ReasonQueueFull))
			}
		})
	}
}

func sizeOf(r Record) int { return r.Size() }

// TestReadCost: Read measures a batch with ReadCost added to
// each record, in every mode, and still returns one record that alone is
// over maxBytes.
func TestReadCost(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			q := open(t, mode, t.TempDir(), Options{ReadCost: 100})
			defer q.Close()
			appendN(t, q, 0, 10)
			sz := sizeOf(rec(0))
			got, err := q.Read(nil, 3*(sz+100))
			if err != nil {
				t.Fatal(err)
			}
			wantRange(t, got, 0, 3)
			if got, _ = q.Read(nil, sz+99); len(got) != 1 {
				t.Fatalf("read under one record's cost returned %d entries, want 1", len(got))
			}
			if s := q.Stats(); s.Inflight != 4 || s.Bytes != int64(10*sz) {
				t.Fatalf("stats %+v: the cost is not the record's size", s)
			}
		})
	}
}
