package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqkafka/mqkafka/internal/logx"
	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// Refusal reasons of the rate limits, named after their config keys; each
// counts a pause: an accept, a packet or a read that had to wait.
const (
	reasonConnRate     = "max_conn_rate"
	reasonMessagesRate = "messages_rate"
	reasonBytesRate    = "bytes_rate"
)

// bucket is a token bucket holding a second's worth of tokens (at least
// one). Taking more than it holds leaves it in debt, which the taker waits
// out, so that whatever the sizes taken, no more than burst + rate × t
// tokens are taken within t.
type bucket struct {
	rate, burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newBucket(rate float64) *bucket {
	burst := max(rate, 1)
	return &bucket{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

// take takes n tokens and returns how long to wait until they are there.
func (b *bucket) take(n float64) time.Duration {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// pause waits d, or until done is closed, and reports whether it waited d.
func pause(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// connRate applies max_conn_rate to one listener: past the rate, the
// listener stops accepting until a token is there, as EMQX does.
// Connections wait in the kernel's accept queue meanwhile, at no cost to
// the broker, and are served in order rather than refused; once the queue
// is full the kernel drops new SYNs and clients retry.
type connRate struct {
	bucket  *bucket
	delayed *atomic.Int64 // refusals "max_conn_rate"
	log     *slog.Logger
	lastLog atomic.Int64
}

// throttle is the listener's Throttle: it waits for the accepted
// connection's token.
func (r *connRate) throttle(done <-chan struct{}) bool {
	d := r.bucket.take(1)
	if d == 0 {
		return true
	}
	r.delayed.Add(1)
	if logx.Allowed(&r.lastLog) {
		r.log.Info("accepting paused: connections arrive above max_conn_rate (logged at most once a second)", "wait", d)
	}
	return pause(d, done)
}

// clientRates applies messages_rate and bytes_rate to every client
// connection by back-pressure, as EMQX does: a client over its rate is not
// read from until its tokens are there, so that TCP flow control slows it
// down, and nothing it sent is refused. It wraps each accepted connection
// (wrap) and, as a hook, waits before each PUBLISH, SUBSCRIBE and
// UNSUBSCRIBE is processed.
type clientRates struct {
	mqtt.HookBase
	messages, bytes               float64 // per second; 0: no limit
	messagesDelayed, bytesDelayed *atomic.Int64
	log                           *slog.Logger
	lastLog                       atomic.Int64
}

func (r *clientRates) ID() string { return "mqkafka-rates" }

func (r *clientRates) Provides(b byte) bool { return b == mqtt.OnPacketRead && r.messages > 0 }

// wrap gives c its own buckets, if any rate is set.
func (r *clientRates) wrap(c net.Conn) net.Conn {
	if r.messages == 0 && r.bytes == 0 {
		return c
	}
	lc := &limitedConn{Conn: c, rates: r, closed: make(chan struct{})}
	if r.messages > 0 {
		lc.messages = newBucket(r.messages)
	}
	if r.bytes > 0 {
		lc.bytes = newBucket(r.bytes)
	}
	return lc
}

// OnPacketRead runs in the client's read loop, after the packet is read
// and before it is processed: waiting here holds back the next read.
func (r *clientRates) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Publish, packets.Subscribe, packets.Unsubscribe:
	default:
		return pk, nil
	}
	if c, ok := cl.Net.Conn.(*limitedConn); ok && c.messages != nil {
		c.wait(c.messages.take(1), r.messagesDelayed, reasonMessagesRate)
	}
	return pk, nil
}

// limitedConn is a client connection with its own rate buckets; Close
// ends a wait, so that a paused client can be disconnected at once.
type limitedConn struct {
	net.Conn
	rates           *clientRates
	messages, bytes *bucket // nil: no limit

	closeOnce sync.Once
	closed    chan struct{}
}

// Read takes a token per byte read and waits for them before returning,
// so that the next read comes no sooner than bytes_rate allows.
func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.bytes != nil {
		c.wait(c.bytes.take(float64(n)), c.rates.bytesDelayed, reasonBytesRate)
	}
	return n, err
}

// CloseWrite half-closes the connection underneath, so that a throttled
// client still receives the last packet before the close (mqtt.CloseWrite
// finds the method on the wrapper, not through it).
func (c *limitedConn) CloseWrite() error {
	if !mqtt.CloseWrite(c.Conn) {
		return errors.New("broker: the connection cannot close its writing side")
	}
	return nil
}

func (c *limitedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *limitedConn) wait(d time.Duration, delayed *atomic.Int64, limit string) {
	if d == 0 {
		return
	}
	delayed.Add(1)
	if logx.Allowed(&c.rates.lastLog) {
		c.rates.log.Info("client paused: it sends above a rate limit (logged at most once a second)",
			"limit", limit, "remote", c.RemoteAddr().String(), "wait", d)
	}
	pause(d, c.closed)
}
