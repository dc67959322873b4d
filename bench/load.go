package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// loadSpec is one MQTT publishing load.
type loadSpec struct {
	addr     string
	clients  int
	inflight int // unacknowledged QoS 1 publishes per connection
	qos      byte
	size     int
	// messages is the total over all clients; 0 means "for duration".
	messages int64
	duration time.Duration
	// rate is the total target in messages per second; 0 is as fast as
	// the acknowledgements come back.
	rate     float64
	tag      uint32
	topic    string // each client publishes to topic + "/" + its number
	clientID string // prefix of client ids
	// drain bounds the wait for outstanding PUBACKs after the last publish.
	drain time.Duration
}

// load runs a loadSpec; its counters are read by the progress line while
// it runs.
type load struct {
	spec   loadSpec
	sent   atomic.Int64
	acked  atomic.Int64
	nacked atomic.Int64 // negative PUBACKs (the broker refused)
	nextID atomic.Uint64
	ackSet idSet // ids acknowledged (QoS 1) or written (QoS 0)

	firstNs atomic.Int64
	lastNs  atomic.Int64 // last PUBACK (QoS 1) or write (QoS 0)
	// hists are PUBACK latency from when each publish was due (at a fixed
	// rate; from when it was written otherwise), sendHists from when it was
	// written, lagHists how late the writer was against its schedule: a
	// large lag means the bench itself, not the broker, fell behind.
	hists, sendHists, lagHists hists
}

// loadResult is what a finished load measured.
type loadResult struct {
	sent, acked, nacked int64
	ids                 uint64 // ids handed out: 0..ids-1
	first, last         time.Time
	puback              *hdrhistogram.Histogram // nil for QoS 0
	// At a fixed rate: PUBACK latency from the actual write, and the
	// writers' lag behind schedule.
	pubackFromSend, lag *hdrhistogram.Histogram
}

func newLoad(spec loadSpec) *load { return &load{spec: spec} }

// run connects every client, publishes and waits for the acknowledgements.
func (l *load) run(ctx context.Context) (loadResult, error) {
	s := l.spec
	conns := make([]*mqttConn, s.clients)
	// Connecting first, all of them, keeps connection setup out of the
	// measured rate.
	for i := range conns {
		c, err := dialMQTT(ctx, s.addr, nil, fmt.Sprintf("%s-%d", s.clientID, i), 0)
		if err != nil {
			for _, c := range conns[:i] {
				c.disconnect()
			}
			return loadResult{}, err
		}
		conns[i] = c
	}
	start := time.Now()
	var end time.Time
	if s.messages == 0 {
		end = start.Add(s.duration)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.runConn(ctx, c, i, start, end)
		}()
	}
	wg.Wait()
	res := loadResult{
		sent: l.sent.Load(), acked: l.acked.Load(), nacked: l.nacked.Load(),
		ids:   min(l.nextID.Load(), uint64(max(s.messages, 0))),
		first: time.Unix(0, l.firstNs.Load()), last: time.Unix(0, l.lastNs.Load()),
	}
	if s.messages == 0 {
		res.ids = l.nextID.Load()
	}
	if s.qos > 0 {
		res.puback = l.hists.merged()
		if s.rate > 0 {
			res.pubackFromSend = l.sendHists.merged()
		}
	}
	if s.rate > 0 {
		res.lag = l.lagHists.merged()
	}
	return res, errors.Join(errs...)
}

// take hands out the next message id, or false when the run is complete.
func (l *load) take(end time.Time, now time.Time) (uint64, bool) {
	if !end.IsZero() {
		if now.After(end) {
			return 0, false
		}
		return l.nextID.Add(1) - 1, true
	}
	id := l.nextID.Add(1) - 1
	return id, id < uint64(l.spec.messages)
}

// runConn drives one connection: this goroutine writes, a second one reads
// the PUBACKs. The in-flight window is a channel of free packet ids.
func (l *load) runConn(ctx context.Context, c *mqttConn, no int, start, end time.Time) error {
	s := l.spec
	topic := fmt.Sprintf("%s/%d", s.topic, no)
	window := min(s.inflight, c.receiveMax, 65535)
	free := make(chan uint16, window)
	for pid := 1; pid <= window; pid++ {
		free <- uint16(pid)
	}
	w := &inflight{
		ids: make([]atomic.Uint64, window+1), dueAt: make([]atomic.Int64, window+1), sentAt: make([]atomic.Int64, window+1),
		h: newHist(), hSend: newHist(),
	}
	l.hists.add(w.h)
	l.sendHists.add(w.hSend)
	lag := newHist()
	l.lagHists.add(lag)

	readerDone := make(chan error, 1)
	go func() { readerDone <- l.readAcks(c, free, w) }()

	var interval time.Duration
	next := start
	if s.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(s.clients) / s.rate)
		// Spread the connections' schedules over one interval.
		next = start.Add(interval * time.Duration(no) / time.Duration(s.clients))
	}
	payload := make([]byte, s.size)
	fillPayload(payload, s.tag, 0, 0)
	sleep := newSleeper()
	defer sleep.stop()
	var werr error
	for ctx.Err() == nil && werr == nil {
		now := time.Now()
		stamp := now
		if interval > 0 {
			if next.After(now) {
				if werr = c.flush(); werr != nil {
					break
				}
				if !sleep.until(ctx, next) {
					break
				}
				now = time.Now()
			}
			recordLatency(lag, now.Sub(next))
			// Latency at a fixed rate is measured from when the message was
			// due, not from when it could be sent, so that a stall shows
			// as latency for everything queued behind it (no coordinated
			// omission).
			stamp = next
			next = next.Add(interval)
		}
		id, ok := l.take(end, now)
		if !ok {
			break
		}
		var pid uint16
		if s.qos > 0 {
			select {
			case pid = <-free:
			default:
				if werr = c.flush(); werr != nil {
					break
				}
				select {
				case pid = <-free:
				case <-ctx.Done():
				case werr = <-readerDone:
					if werr == nil {
						werr = errors.New("connection closed by the broker")
					}
				}
			}
			if pid == 0 {
				break
			}
			sent := time.Now()
			if interval == 0 {
				stamp = sent
			}
			w.ids[pid].Store(id)
			w.dueAt[pid].Store(stamp.UnixNano())
			w.sentAt[pid].Store(sent.UnixNano())
		}
		stampPayload(payload, id, stamp.UnixNano())
		l.firstNs.CompareAndSwap(0, stamp.UnixNano())
		if werr = c.writePublish(topic, s.qos, pid, payload); werr != nil {
			break
		}
		l.sent.Add(1)
		if s.qos == 0 {
			l.ackSet.add(id)
			l.acked.Add(1)
			storeMax(&l.lastNs, stamp.UnixNano())
		}
	}
	if werr == nil {
		werr = c.flush()
	}
	// Wait for the outstanding PUBACKs: the window is full again when
	// every packet id came back.
	if s.qos > 0 && werr == nil {
		deadline := time.Now().Add(s.drain)
		for len(free) < window && time.Now().Before(deadline) && ctx.Err() == nil {
			select {
			case werr = <-readerDone:
				readerDone <- werr
			case <-time.After(5 * time.Millisecond):
			}
			if werr != nil {
				break
			}
		}
		if n := window - len(free); n > 0 && werr == nil {
			werr = fmt.Errorf("client %d: %d publishes not acknowledged within %v", no, n, s.drain)
		}
	}
	c.disconnect()
	if rerr := <-readerDone; werr == nil && rerr != nil && !isClosedErr(rerr) {
		werr = rerr
	}
	if werr != nil {
		return fmt.Errorf("mqtt client %d: %w", no, werr)
	}
	return nil
}

// inflight is what a connection's writer leaves for its reader about each
// packet id: indexed by packet id, atomics because the writer stores and the
// reader loads with only the TCP round trip between them.
type inflight struct {
	ids           []atomic.Uint64
	dueAt, sentAt []atomic.Int64
	h, hSend      *hdrhistogram.Histogram // owned by the reader
}

// readAcks reads PUBACKs until the connection closes.
func (l *load) readAcks(c *mqttConn, free chan<- uint16, w *inflight) error {
	for {
		typ, _, body, err := c.readPacket()
		if err != nil {
			return err
		}
		switch typ {
		case pktPuback:
			pid, rc, ok := parsePuback(body)
			if !ok || int(pid) >= len(w.ids) || pid == 0 {
				return fmt.Errorf("malformed PUBACK")
			}
			now := time.Now().UnixNano()
			if rc >= 0x80 {
				l.nacked.Add(1)
			} else {
				l.ackSet.add(w.ids[pid].Load())
				l.acked.Add(1)
				recordLatency(w.h, time.Duration(now-w.dueAt[pid].Load()))
				recordLatency(w.hSend, time.Duration(now-w.sentAt[pid].Load()))
				storeMax(&l.lastNs, now)
			}
			free <- pid
		case pktDisconnect:
			rc := byte(0)
			if len(body) > 0 {
				rc = body[0]
			}
			return fmt.Errorf("broker sent DISCONNECT, reason 0x%02x", rc)
		}
	}
}

// sleeper is one reusable timer: a writer at a fixed rate sleeps before
// almost every message, and a timer per sleep would be the bench's largest
// cost at low rates.
type sleeper struct{ t *time.Timer }

func newSleeper() *sleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &sleeper{t: t}
}

func (s *sleeper) until(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	s.t.Reset(d)
	select {
	case <-ctx.Done():
		s.t.Stop()
		return false
	case <-s.t.C:
		return true
	}
}

func (s *sleeper) stop() { s.t.Stop() }
