package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

var durableModes = []Mode{ModeDisk, ModeHybrid}

// crashAndReopen crashes a disk queue, reopens it and returns the values
// of every record it still holds.
func crashAndReopen(t *testing.T, q Queue, dir string, opts Options) map[int]bool {
	t.Helper()
	crash(q)
	q = open(t, ModeDisk, dir, opts)
	t.Cleanup(func() { q.Close() })
	seen := map[int]bool{}
	for _, e := range drain(t, q, 1<<20) {
		seen[valueOf(t, e)] = true
	}
	return seen
}

// crash stops a disk queue's goroutine and forgets it without writing,
// syncing or closing anything, as a killed process would.
func crash(q Queue) {
	d := q.(*Disk)
	close(d.stop)
	d.wg.Wait()
	if d.own != nil {
		d.own.Close()
	}
}

func TestReopenDeliversUnacked(t *testing.T) {
	for _, mode := range durableModes {
		for _, fsync := range []Fsync{FsyncBatch, FsyncInterval, FsyncNever} {
			t.Run(string(mode)+"/"+string(fsync), func(t *testing.T) {
				dir := t.TempDir()
				opts := Options{Fsync: fsync, SegmentBytes: 2 << 10, MemoryLimit: 1 << 10}
				q := open(t, mode, dir, opts)
				appendN(t, q, 0, 100)
				got, _ := q.Read(nil, 30*sizeOf(rec(0)))
				wantRange(t, got, 0, 30)
				q.Ack(got[19].Seq)
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
				q = open(t, mode, dir, opts)
				if s := q.Stats(); s.Records != 80 || s.Bytes != int64(80*sizeOf(rec(0))) || s.Inflight != 0 {
					t.Fatalf("stats after reopen %+v", s)
				}
				all := drain(t, q, 7*sizeOf(rec(0)))
				wantRange(t, all, 20, 100)
				if all[0].Seq != 21 {
					t.Fatalf("first seq %d, want 21", all[0].Seq)
				}
				// New entries continue the Seqs.
				appendN(t, q, 100, 110)
				more := drain(t, q, 1<<20)
				wantRange(t, more, 100, 110)
				if more[0].Seq != 101 {
					t.Fatalf("seq after reopen %d, want 101", more[0].Seq)
				}
				q.Ack(more[len(more)-1].Seq)
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
				q = open(t, mode, dir, opts)
				defer q.Close()
				if got := drain(t, q, 1<<20); len(got) != 0 {
					t.Fatalf("acknowledged entries delivered again: %v", values(t, got))
				}
				appendN(t, q, 110, 111)
				if got := drain(t, q, 1<<20); len(got) != 1 || got[0].Seq != 111 {
					t.Fatalf("after reopen of an acked queue: %+v", got)
				}
			})
		}
	}
}

func TestRecordFieldsSurviveDisk(t *testing.T) {
	for _, mode := range durableModes {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			recs := []Record{
				{Key: nil, Value: nil, Time: 1},
				{Key: []byte{}, Value: []byte{}, Time: -2},
				{Key: []byte("k"), Value: []byte("v"), Headers: []Header{{Key: "a", Value: []byte("1")}, {Key: "", Value: nil}, {Key: "c", Value: []byte{}}}, Time: 3},
			}
			q := open(t, mode, dir, Options{})
			if err := q.Append(context.Background(), ack.InCall(), recs...); err != nil {
				t.Fatal(err)
			}
			q.Close()
			q = open(t, mode, dir, Options{})
			defer q.Close()
			got := drain(t, q, 1<<20)
			if len(got) != 3 {
				t.Fatalf("got %d entries", len(got))
			}
			for i, e := range got {
				w := recs[i]
				if (e.Key == nil) != (w.Key == nil) || (e.Value == nil) != (w.Value == nil) ||
					!bytes.Equal(e.Key, w.Key) || !bytes.Equal(e.Value, w.Value) || e.Time != w.Time ||
					len(e.Headers) != len(w.Headers) || e.Size() != w.Size() {
					t.Fatalf("entry %d = %+v, want %+v", i, e.Record, w)
				}
				for j, h := range e.Headers {
					if h.Key != w.Headers[j].Key || !bytes.Equal(h.Value, w.Headers[j].Value) || (h.Value == nil) != (w.Headers[j].Value == nil) {
						t.Fatalf("entry %d header %d = %+v, want %+v", i, j, h, w.Headers[j])
					}
				}
			}
		})
	}
}

// TestCrashLosesNothingAcknowledged: with fsync=batch, whatever Append
// returned nil for is there after a crash (here: the process state is
// dropped; what the kernel has is what a SIGKILL leaves).
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10}
	q := open(t, ModeDisk, dir, opts)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := map[int]bool{}
	for a := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				v := a*1000 + i
				if err := q.Append(context.Background(), ack.InCall(), rec(v)); err == nil {
					mu.Lock()
					accepted[v] = true
					mu.Unlock()
				}
			}
		}()
	}
	// Read and acknowledge some while appending, as the producer would.
	acked := map[int]bool{}
	for range 5 {
		got, _ := q.Read(nil, 10*sizeOf(rec(0)))
		for _, e := range got {
			acked[valueOf(t, e)] = true
		}
		if len(got) > 0 {
			q.Ack(got[len(got)-1].Seq)
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	seen := crashAndReopen(t, q, dir, opts)
	for v := range accepted {
		if !seen[v] && !acked[v] {
			t.Fatalf("accepted record %d lost", v)
		}
	}
	if len(accepted) != 500 {
		t.Fatalf("accepted %d", len(accepted))
	}
}

func TestHybridCrashKeepsSpilledPrefix(t *testing.T) {
	dir := t.TempDir()
	sz := sizeOf(rec(0))
	opts := Options{MemoryLimit: int64(20 * sz), SegmentBytes: 1 << 10}
	q := open(t, ModeHybrid, dir, opts)
	appendN(t, q, 0, 100)
	if s := q.(*Disk); s.written == 0 {
		t.Fatal("nothing spilled")
	}
	crash(q)
	q = open(t, ModeHybrid, dir, opts)
	defer q.Close()
	got := drain(t, q, 1<<20)
	if len(got) < 75 || len(got) > 100 {
		t.Fatalf("kept %d entries", len(got))
	}
	wantRange(t, got, 0, len(got))
}

func TestHybridSpillRebaseOrder(t *testing.T) {
	dir := t.TempDir()
	sz := sizeOf(rec(0))
	opts := Options{MemoryLimit: int64(10 * sz), SegmentBytes: int64(30 * sz)}
	q := open(t, ModeHybrid, dir, opts)
	// Reader keeps up: nothing is written.
	appendN(t, q, 0, 8)
	got := drain(t, q, 1<<20)
	q.Ack(got[len(got)-1].Seq)
	if d := q.(*Disk); d.written != 0 {
		t.Fatalf("written %d while the reader kept up", d.written)
	}
	// Reader stalls: the oldest spill, the WAL starts at the first unacked Seq.
	appendN(t, q, 8, 60)
	if d := q.(*Disk); d.written < 9 {
		t.Fatalf("written %d", d.written)
	}
	got = drain(t, q, 5*sz)
	wantRange(t, got, 8, 60)
	q.Ack(got[20].Seq) // up to value 28
	q.Rewind()
	appendN(t, q, 60, 70)
	got = drain(t, q, 3*sz)
	wantRange(t, got, 29, 70)
	q.Ack(got[9].Seq) // up to value 38
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, ModeHybrid, dir, opts)
	got = drain(t, q, 1<<20)
	wantRange(t, got, 39, 70)
	q.Ack(got[len(got)-1].Seq)
	appendN(t, q, 70, 75) // all acked: Close rebases to an empty log
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, ModeHybrid, dir, opts)
	defer q.Close()
	got = drain(t, q, 1<<20)
	wantRange(t, got, 70, 75)
	if got[0].Seq != 71 {
		t.Fatalf("seq %d, want 71", got[0].Seq)
	}
}

// TestHybridEvictedStayDropped: entries evicted while in memory are written
// as tombstones on Close and not delivered after a restart.
func TestHybridEvictedStayDropped(t *testing.T) {
	dir := t.TempDir()
	sz := int64(sizeOf(rec(0)))
	var dr drops
	opts := Options{Limit: 10 * sz, OnDrop: dr.fn}
	q := open(t, ModeHybrid, dir, opts)
	appendN(t, q, 0, 10)
	got, _ := q.Read(nil, int(2*sz)) // 0,1 in flight
	wantRange(t, got, 0, 2)
	appendN(t, q, 10, 13) // evicts 2,3,4
	q.Close()
	q = open(t, ModeHybrid, dir, opts)
	defer q.Close()
	all := drain(t, q, 1<<20)
	want := "[0 1 5 6 7 8 9 10 11 12]"
	if vs := fmt.Sprint(values(t, all)); vs != want {
		t.Fatalf("after reopen %s, want %s", vs, want)
	}
	if s := q.Stats(); s.Records != 10 {
		t.Fatalf("stats %+v", s)
	}
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %v %v", segs, err)
	}
	return segmentPath(dir, segs[len(segs)-1])
}

func TestTornTail(t *testing.T) {
	cases := map[string]func(t *testing.T, path string){
		"truncated": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()-3); err != nil {
				t.Fatal(err)
			}
		},
		"flipped": func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			b[len(b)-4] ^= 0x40 // inside the last entry's value
			if err := os.WriteFile(path, b, 0o640); err != nil {
				t.Fatal(err)
			}
		},
		"garbage length": func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte{0xff, 0xff, 0x03, 1, 2})
			f.Close()
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentBytes: 1 << 10}
			q := open(t, ModeDisk, dir, opts)
			appendN(t, q, 0, 50)
			q.Close()
			damage(t, lastSegment(t, dir))
			var logs testkit.SyncBuffer
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			q = open(t, ModeDisk, dir, opts)
			defer q.Close()
			want := 49
			if name == "garbage length" {
				want = 50
			}
			wantRange(t, drain(t, q, 1<<20), 0, want)
			if !strings.Contains(logs.String(), "torn or corrupt log tail") {
				t.Fatalf("repair not logged: %q", logs.String())
			}
			// The repaired log takes new entries after the kept ones.
			appendN(t, q, 100, 101)
			got := drain(t, q, 1<<20)
			if len(got) != 1 || got[0].Seq != uint64(want+1) {
				t.Fatalf("after repair: %+v", got)
			}
		})
	}
}

// damagedLog writes 100 records to a disk queue in dir of three segments or
// more, closes it and lets damage change the second segment's bytes; it
// returns the segments' first Seqs.
func damagedLog(t *testing.T, dir string, opts Options, damage func(b []byte)) []uint64 {
	t.Helper()
	q := open(t, ModeDisk, dir, opts)
	appendN(t, q, 0, 100)
	q.Close()
	segs, _ := listSegments(dir)
	if len(segs) < 3 {
		t.Fatalf("want several segments, have %d", len(segs))
	}
	path := segmentPath(dir, segs[1])
	b, _ := os.ReadFile(path)
	damage(b)
	os.WriteFile(path, b, 0o640)
	return segs
}

// readPastCorruption reads q until it is empty, passing over ErrCorrupt,
// and tells whether it saw one.
func readPastCorruption(t *testing.T, q Queue) (vals []int, sawErr bool) {
	t.Helper()
	for range 1000 {
		got, err := q.Read(nil, 1<<20)
		if errors.Is(err, ErrCorrupt) {
			sawErr = true
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		vals = append(vals, values(t, got)...)
	}
	return vals, sawErr
}

func TestCorruptMidLog(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1 << 10}
	var dr drops
	opts.OnDrop = dr.fn
	segs := damagedLog(t, dir, opts, func(b []byte) {
		b[len(b)-2] ^= 0x01 // the last entry of the second segment
	})
	bad := int(segs[2]) - 2 // its value (Seq-1)

	q := open(t, ModeDisk, dir, opts)
	defer q.Close()
	vals, sawErr := readPastCorruption(t, q)
	if !sawErr || dr.get(ReasonCorrupt) != 1 || len(vals) != 99 {
		t.Fatalf("err seen %v, corrupt drops %d, delivered %d", sawErr, dr.get(ReasonCorrupt), len(vals))
	}
	for i, v := range vals {
		w := i
		if i >= bad {
			w++
		}
		if v != w {
			t.Fatalf("entry %d = %d, want %d", i, v, w)
		}
	}
}

// TestTruncationAndAckPoint: acknowledged segments are removed from disk,
// and a reopen starts after the saved ack point, not at the log's first entry.
func TestTruncationAndAckPoint(t *testing.T) {
	for _, mode := range durableModes {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			sz := sizeOf(rec(0))
			opts := Options{SegmentBytes: int64(10 * sz), MemoryLimit: int64(5 * sz)}
			q := open(t, mode, dir, opts)
			appendN(t, q, 0, 200)
			segs, _ := listSegments(dir)
			before := len(segs)
			got := drain(t, q, 1<<20)
			wantRange(t, got, 0, 200)
			q.Ack(got[184].Seq) // value 184 = Seq 185, mid-segment
			deadline := time.Now().Add(5 * time.Second)
			for {
				segs, _ = listSegments(dir)
				if len(segs) <= 4 || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if len(segs) > 4 {
				t.Fatalf("%d segments before, %d after acking most", before, len(segs))
			}
			// Let the rate-limited ack point save happen, then crash.
			time.Sleep(3 * ackSaveEvery / 2)
			if mode == ModeDisk {
				crash(q)
			} else {
				q.Close()
			}
			q = open(t, mode, dir, opts)
			defer q.Close()
			wantRange(t, drain(t, q, 1<<20), 185, 200)
		})
	}
}

func TestDropOldestBoundsDisk(t *testing.T) {
	// With nothing in flight, evicted entries at the head are released and
	// the WAL is cut even though nothing is ever acknowledged.
	dir := t.TempDir()
	sz := int64(sizeOf(rec(0)))
	var dr drops
	q := open(t, ModeDisk, dir, Options{Limit: 20 * sz, SegmentBytes: 10 * sz, OnDrop: dr.fn, Fsync: FsyncNever})
	defer q.Close()
	appendN(t, q, 0, 1000)
	// The maintainer cuts released segments in the background.
	testkit.WaitFor(t, 10*time.Second, "at most 6 segments for a 20-record queue", func() bool {
		segs, _ := listSegments(dir)
		return len(segs) <= 6
	})
	got := drain(t, q, 1<<20)
	wantRange(t, got, 980, 1000)
	if len(got)+dr.total() != 1000 {
		t.Fatalf("delivered %d + dropped %d", len(got), dr.total())
	}
}

func TestOpenOptionsErrors(t *testing.T) {
	if _, err := Open(Options{Mode: ModeDisk}); err == nil {
		t.Fatal("disk without dir opened")
	}
	if _, err := Open(Options{Mode: ModeDisk, Dir: t.TempDir(), Fsync: "sometimes"}); err == nil {
		t.Fatal("bad fsync policy accepted")
	}
}

// TestCloseWhileAppending: an Append that returned nil is on disk after the
// concurrent Close; the others got ErrClosed.
func TestCloseWhileAppending(t *testing.T) {
	for _, mode := range durableModes {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentBytes: 4 << 10, MemoryLimit: 2 << 10}
			q := open(t, mode, dir, opts)
			var wg sync.WaitGroup
			var mu sync.Mutex
			accepted := map[int]bool{}
			for a := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						v := a*100000 + i
						err := q.Append(context.Background(), ack.InCall(), rec(v))
						if errors.Is(err, ErrClosed) {
							return
						}
						if err != nil {
							t.Errorf("append: %v", err)
							return
						}
						mu.Lock()
						accepted[v] = true
						mu.Unlock()
					}
				}()
			}
			time.Sleep(20 * time.Millisecond)
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			q = open(t, mode, dir, opts)
			defer q.Close()
			got := drain(t, q, 1<<20)
			seen := map[int]bool{}
			for _, e := range got {
				seen[valueOf(t, e)] = true
			}
			for v := range accepted {
				if !seen[v] {
					t.Fatalf("accepted %d missing after close and reopen (%d accepted, %d found)", v, len(accepted), len(seen))
				}
			}
			if len(seen) != len(got) {
				t.Fatalf("%d duplicates", len(got)-len(seen))
			}
		})
	}
}

// TestBrokenFrameMidLog damages a frame length inside a segment that is not
// the tail: the rest of that segment is dropped as corrupt, counted, and the
// later segments are delivered.
func TestBrokenFrameMidLog(t *testing.T) {
	dir := t.TempDir()
	var dr drops
	opts := Options{SegmentBytes: 1 << 10, OnDrop: dr.fn}
	segs := damagedLog(t, dir, opts, func(b []byte) {
		b[3] = 0x7f // the first frame's length runs past the file
	})
	lost := int(segs[2] - segs[1])

	q := open(t, ModeDisk, dir, opts)
	defer q.Close()
	vals, _ := readPastCorruption(t, q)
	if dr.get(ReasonCorrupt) != lost || len(vals)+lost != 100 {
		t.Fatalf("corrupt drops %d, want %d; delivered %d", dr.get(ReasonCorrupt), lost, len(vals))
	}
	if s := q.Stats(); s.Records != int64(len(vals)) {
		t.Fatalf("stats %+v after reading %d", s, len(vals))
	}
}
