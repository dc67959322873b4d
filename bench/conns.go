package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqkafka/mqkafka/internal/backoff"
)

// connections opens idle MQTT connections and reports what each costs the
// broker and how fast they are accepted.
func (r *runner) connections(ctx context.Context) {
	target := r.o.Connections
	if target <= 0 {
		target = 100_000
	}
	name, _ := r.next("connections", Params{})
	res := newResult(name, ScenarioConnections, Params{})
	defer r.add(res)
	res.fail(r.runConnections(ctx, name, target, res))
}

// fdReserve is what each process keeps for everything but the idle
// connections: listeners, logs, Kafka sockets, the pprof endpoint.
const fdReserve = 200

func (r *runner) runConnections(ctx context.Context, name string, target int, res *Result) error {
	limit := r.report.FileLimit
	n := target
	limitedBy := "nothing: the target was reached"
	if limit > 0 && uint64(n)+fdReserve > limit {
		n = int(limit) - fdReserve
		limitedBy = fmt.Sprintf("RLIMIT_NOFILE: the hard limit here is %d open files per process and cannot be raised (setrlimit: EPERM); the broker needs one per connection, and so does the bench", limit)
	}
	res.Extra = map[string]any{"target": target, "file_limit": limit}

	mq, err := r.startMQKafka(ctx, name, mqConfig{})
	if err != nil {
		return err
	}
	defer r.stopMQKafka(mq)
	rss0, heap0 := r.settledMemory(ctx, mq)

	conns := make([]net.Conn, n)
	var connected, failed atomic.Int64
	var firstErr atomic.Value
	work := make(chan int)
	var wg sync.WaitGroup
	// Concurrent handshakes: one at a time the round trips, not the
	// broker, would set the connect rate.
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// One source address has ~28k ephemeral ports; spreading
				// over 127.0.0.1-254 lifts that limit.
				local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%254))}
				c, err := dialMQTT(ctx, mq.addr, local, "idle-"+strconv.Itoa(i), 0)
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					failed.Add(1)
					continue
				}
				conns[i] = c.nc
				connected.Add(1)
			}
		}()
	}
	prog := startProgress(ctx, r.o.Progress, name+" connecting", connected.Load, nil, nil)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil && failed.Load() < 100; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	prog.end()
	if f := failed.Load(); f > 0 {
		limitedBy = fmt.Sprintf("%d connections failed; first: %v", f, firstErr.Load())
	}

	// Hold them a moment, as idle devices would, before measuring.
	backoff.Sleep(ctx, 3*time.Second)
	rss1, heap1 := r.settledMemory(ctx, mq)
	got := connected.Load()
	res.Extra["connected"] = int(got)
	res.Extra["limited_by"] = limitedBy
	res.Extra["connect_seconds"] = elapsed.Seconds()
	res.Extra["connect_rate"] = float64(got) / elapsed.Seconds()
	if s, ok := mq.stats(); ok {
		res.PeakRSSBytes = &s.hwm
		res.Extra["rss_before_bytes"] = rss0
		res.Extra["rss_after_bytes"] = rss1
		res.Extra["rss_delta_bytes"] = rss1 - rss0
		res.Extra["threads"] = s.threads
		if got > 0 {
			res.Extra["rss_per_conn_bytes"] = float64(rss1-rss0) / float64(got)
			res.Extra["heap_per_conn_bytes"] = float64(heap1-heap0) / float64(got)
		}
		res.Extra["goroutines"] = goroutines(ctx, mq)
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return nil
}

// settledMemory has mqkafka collect garbage (the heap profile endpoint
// with gc=1 runs a GC first), then reads its RSS and heap in use.
func (r *runner) settledMemory(ctx context.Context, mq *mqSide) (rss, heap int64) {
	if mq == nil || mq.ch == nil {
		return 0, 0
	}
	_, _ = httpGet(ctx, "http://"+mq.pprof+"/debug/pprof/heap?gc=1")
	if s, ok := mq.stats(); ok {
		rss = s.rss
	}
	if m, ok := mq.memStats(ctx); ok {
		heap = int64(m.HeapInuse)
	}
	return rss, heap
}

// goroutines reads the child's goroutine count from its pprof endpoint.
func goroutines(ctx context.Context, mq *mqSide) int {
	body, err := httpGet(ctx, "http://"+mq.pprof+"/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0
	}
	line, err := bufio.NewReader(bytes.NewReader(body)).ReadString('\n')
	if err != nil {
		return 0
	}
	var total int
	_, _ = fmt.Sscanf(line, "goroutine profile: total %d", &total)
	return total
}
