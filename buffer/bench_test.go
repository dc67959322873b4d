package buffer

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/ack"
)

// drainer reads and acknowledges everything, as a producer that keeps up.
func drainer(q Queue, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ents []Entry
		for {
			ents, _ = q.Read(ents[:0], 1<<20)
			if len(ents) > 0 {
				q.Ack(ents[len(ents)-1].Seq)
				continue
			}
			select {
			case <-q.Ready():
			case <-stop:
				return
			}
		}
	}()
	return &wg
}

// BenchmarkAppend measures concurrent appenders with a reader that keeps up.
// b.N is the total number of records; each Append carries one.
func BenchmarkAppend(b *testing.B) {
	type variant struct {
		mode  Mode
		fsync Fsync
	}
	variants := []variant{
		{ModeMemory, ""},
		{ModeDisk, FsyncBatch}, {ModeDisk, FsyncInterval}, {ModeDisk, FsyncNever},
		{ModeHybrid, FsyncBatch},
	}
	for _, v := range variants {
		for _, appenders := range []int{1, 10, 100} {
			for _, size := range []int{100, 1024} {
				name := fmt.Sprintf("mode=%s/fsync=%s/appenders=%d/size=%d", v.mode, v.fsync, appenders, size)
				if v.mode == ModeMemory {
					name = fmt.Sprintf("mode=memory/appenders=%d/size=%d", appenders, size)
				}
				b.Run(name, func(b *testing.B) {
					benchAppend(b, v.mode, v.fsync, appenders, size)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, mode Mode, fsync Fsync, appenders, size int) {
	q := open(b, mode, b.TempDir(), Options{Fsync: fsync})
	stop := make(chan struct{})
	wg := drainer(q, stop)
	value := make([]byte, size)
	var next atomic.Int64
	lat := make([][]time.Duration, appenders)
	var awg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for a := range appenders {
		awg.Add(1)
		go func() {
			defer awg.Done()
			l := make([]time.Duration, 0, b.N/appenders+1)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := q.Append(context.Background(), ack.InCall(), Record{Value: value}); err != nil {
					b.Error(err)
					return
				}
				l = append(l, time.Since(t0))
			}
			lat[a] = l
		}()
	}
	awg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	wg.Wait()
	q.Close()
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkReplay reopens a disk queue holding a backlog and reads it all,
// as after a restart. MQKAFKA_BENCH_REPLAY_BYTES sets the backlog (default
// 64 MB); the files are in the page cache, as they are after a process restart.
func BenchmarkReplay(b *testing.B) {
	total := int64(64 << 20)
	if s := os.Getenv("MQKAFKA_BENCH_REPLAY_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("MQKAFKA_BENCH_REPLAY_BYTES: %v", err)
		}
		total = n
	}
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			dir := b.TempDir()
			q := open(b, ModeDisk, dir, Options{Fsync: FsyncNever})
			batch := make([]Record, 256)
			for i := range batch {
				batch[i] = Record{Value: make([]byte, size), Time: int64(i)}
			}
			n := int(total / int64(size))
			for i := 0; i < n; i += len(batch) {
				if err := q.Append(context.Background(), ack.InCall(), batch[:min(len(batch), n-i)]...); err != nil {
					b.Fatal(err)
				}
			}
			if err := q.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var bytes int64
			var openTime time.Duration
			for range b.N {
				t0 := time.Now()
				q := open(b, ModeDisk, dir, Options{Fsync: FsyncNever})
				openTime += time.Since(t0)
				var ents []Entry
				got := 0
				for {
					var err error
					ents, err = q.Read(ents[:0], 1<<20)
					if err != nil {
						b.Fatal(err)
					}
					if len(ents) == 0 {
						break
					}
					for i := range ents {
						bytes += int64(len(ents[i].Value))
					}
					got += len(ents)
				}
				if got != n {
					b.Fatalf("replayed %d of %d", got, n)
				}
				q.Close()
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(bytes)/sec/1e6, "MB/s")
			b.ReportMetric(float64(int64(n)*int64(b.N))/sec, "records/s")
			b.ReportMetric(openTime.Seconds()/float64(b.N)*1000, "open-ms")
		})
	}
}

// BenchmarkTicketAppend appends as the broker does: conns appenders, each
// with up to window records in flight under tickets (its unacknowledged
// publishes), over three partitions sharing a Committer, with readers that
// keep up. b.N is the number of records. cpu-µs/rec is the process's CPU
// time per record, readers and committer included: what disk mode adds
// over memory mode per publish.
func BenchmarkTicketAppend(b *testing.B) {
	for _, mode := range []Mode{ModeMemory, ModeDisk} {
		for _, conns := range []int{10, 100} {
			b.Run(fmt.Sprintf("mode=%s/conns=%d/window=8", mode, conns), func(b *testing.B) {
				benchTicketAppend(b, mode, conns, 8)
			})
		}
	}
}

func benchTicketAppend(b *testing.B, mode Mode, conns, window int) {
	c := NewCommitter()
	defer c.Close()
	qs := make([]Queue, 3)
	stop := make(chan struct{})
	readers := make([]*sync.WaitGroup, len(qs))
	for i := range qs {
		qs[i] = open(b, mode, b.TempDir(), Options{Fsync: FsyncBatch, Committer: c})
		readers[i] = drainer(qs[i], stop)
	}
	value := make([]byte, 100)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, start := cpuTime(b), time.Now()
	for a := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			free := make(chan *ack.Ticket, window)
			for range window {
				var t *ack.Ticket
				t = ack.NewTicket(func(failed bool) {
					if failed {
						b.Error("append failed")
					}
					free <- t
				})
				free <- t
			}
			r := &Record{Value: value}
			for i := a; next.Add(1) <= int64(b.N); i++ {
				t := <-free
				t.Reset()
				if _, err := qs[i%len(qs)].AppendSeq(context.Background(), ack.Deferred(t), r); err != nil {
					b.Error(err)
					return
				}
				if t.Release() {
					free <- t
				}
			}
			for range window {
				<-free
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
	b.StopTimer()
	close(stop)
	for i := range qs {
		readers[i].Wait()
		qs[i].Close()
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/rec")
}

// cpuTime is the CPU time the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
