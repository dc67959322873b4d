package broker

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// pending closes the connections that have not sent CONNECT idle_timeout
// after they were accepted, TLS handshake and WebSocket upgrade included.
// mochi sets no deadline before CONNECT, so a silent socket kept a file
// descriptor, two goroutines and a write queue for good. A timer per
// connection, rather than a read deadline, also covers the WebSocket
// listener's HTTP server, which sets deadlines of its own.
type pending struct {
	mqtt.HookBase
	timeout  time.Duration
	timedOut *atomic.Int64 // refusals "idle_timeout"

	mu sync.Mutex
	// conns are the connections without CONNECT: waiting (with a timer) or
	// closed by the timeout (nil) until their listener lets go of them.
	conns   map[net.Conn]*time.Timer
	waiting int  // conns with a timer
	closed  bool // the broker is stopping: new connections are closed at once
}

func newPending(timeout time.Duration, timedOut *atomic.Int64) *pending {
	return &pending{timeout: timeout, timedOut: timedOut, conns: map[net.Conn]*time.Timer{}}
}

// add starts c's wait for CONNECT, unless it waits already.
func (p *pending) add(c net.Conn) {
	c = underlying(c)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return
	}
	if _, ok := p.conns[c]; !ok {
		p.conns[c] = time.AfterFunc(p.timeout, func() { p.expire(c) })
		p.waiting++
	}
}

func (p *pending) expire(c net.Conn) {
	p.mu.Lock()
	t := p.conns[c]
	if t != nil {
		p.conns[c] = nil
		p.waiting--
	}
	p.mu.Unlock()
	if t != nil {
		p.timedOut.Add(1)
		_ = c.Close()
	}
}

// done ends c's wait (it sent CONNECT or is gone) and reports whether it
// had sent no CONNECT.
func (p *pending) done(c net.Conn) bool {
	c = underlying(c)
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.conns[c]
	if t != nil {
		t.Stop()
		p.waiting--
	}
	delete(p.conns, c)
	return ok
}

// len is how many connections wait for CONNECT.
func (p *pending) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting
}

// close closes the waiting connections: mochi's Close waits for every
// connection it was handed, and knows only those that sent CONNECT.
func (p *pending) close() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.waiting, p.closed = map[net.Conn]*time.Timer{}, 0, true
	p.mu.Unlock()
	for c, t := range conns {
		if t != nil {
			t.Stop()
		}
		_ = c.Close()
	}
}

func (p *pending) ID() string { return "mqkafka-pending" }

func (p *pending) Provides(b byte) bool { return b == mqtt.OnConnect }

// OnConnect runs once CONNECT is read, before it is checked.
func (p *pending) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if cl.Net.Conn != nil {
		p.done(cl.Net.Conn)
	}
	return nil
}

// underlying is the accepted connection under the rate limits and a
// WebSocket, which the listener started waiting for before the upgrade.
func underlying(c net.Conn) net.Conn {
	if lc, ok := c.(*limitedConn); ok {
		c = lc.Conn
	}
	if ws, ok := c.(*wsConn); ok {
		return ws.Conn
	}
	return c
}
