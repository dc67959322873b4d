package broker

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/listeners"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestIdleTimeoutClosesSilentSockets: a socket that sends no CONNECT is
// closed idle_timeout after it was accepted, on every listener type and
// whatever phase it is stuck in (no TLS handshake, no HTTP request, no
// CONNECT after the WebSocket upgrade); the half-open ones are a gauge and
// the closed ones are counted. A client that sent CONNECT is not affected.
func TestIdleTimeoutClosesSilentSockets(t *testing.T) {
	ca := testkit.NewCA(t)
	srv := ca.Server(t, []net.IP{net.ParseIP("127.0.0.1")})
	b, rec := startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
idle_timeout = "2s"
listeners = [
  { type = "tcp", address = "127.0.0.1:0" },
  { type = "tls", address = "127.0.0.1:0", certfile = %[2]q, keyfile = %[3]q },
  { type = "ws", address = "127.0.0.1:0" },
  { type = "wss", address = "127.0.0.1:0", certfile = %[2]q, keyfile = %[3]q },
]
[broker.auth]
allow_anonymous = true
`, t.TempDir(), srv.CertFile, srv.KeyFile)))
	addrs := b.Addrs()
	good := testkit.MQTTClient(t, addrs[0], "good", nil)

	silent := map[string]net.Conn{
		"tcp without CONNECT":     dial(t, addrs[0]),
		"tls without handshake":   dial(t, addrs[1]),
		"ws without HTTP request": dial(t, addrs[2]),
		"wss without handshake":   dial(t, addrs[3]),
	}
	ws, _, err := wsDial(t, "ws://"+addrs[2]+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	silent["ws upgraded without CONNECT"] = ws
	for _, c := range silent {
		defer c.Close()
	}
	testkit.WaitFor(t, 5*time.Second, "the silent sockets to be pending", func() bool { return b.Pending() == len(silent) })

	for what, c := range silent {
		// Before the fix nothing closed them (the ws listener's header
		// timeout was 10s).
		_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("%s: read %d bytes, %v: want the server to close it", what, n, err)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "no pending sockets", func() bool { return b.Pending() == 0 })
	if n := b.Refused()["idle_timeout"]; n != int64(len(silent)) {
		t.Errorf("refused idle_timeout = %d, want %d", n, len(silent))
	}
	if r := pub(t, good, "t/still-here", 1, false, "x"); r.ReasonCode != 0 {
		t.Fatalf("the connected client's publish: reason %#x", r.ReasonCode)
	}
	if got := rec.got(); len(got) != 1 {
		t.Fatalf("the bridge got %v", got)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// stoppingListener's Serve returns at once, as a listener that failed.
type stoppingListener struct{ *listeners.MockListener }

func (stoppingListener) Serve(listeners.EstablishFn) {}

// TestListenerHealth: a listener whose accepts fail, or whose Serve
// returned without Close, is reported with the reason; one that accepts
// again is healthy again.
func TestListenerHealth(t *testing.T) {
	l := &listener{Listener: stoppingListener{listeners.NewMockListener("tcp-0", "127.0.0.1:0")},
		pending: newPending(time.Second, new(atomic.Int64)), acceptErrors: new(atomic.Int64), log: testkit.Logger(t)}
	if ok, why := l.health(); !ok {
		t.Fatalf("a new listener is unhealthy: %s", why)
	}
	l.acceptError(&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)})
	if ok, why := l.health(); ok || why != "listener tcp-0 cannot accept: too many open files" {
		t.Fatalf("failing accepts: healthy %v, %q", ok, why)
	}
	l.acceptError(nil)
	if ok, why := l.health(); !ok {
		t.Fatalf("accepting again: %s", why)
	}
	if n := l.acceptErrors.Load(); n != 1 {
		t.Fatalf("accept errors = %d", n)
	}
	l.Serve(func(string, net.Conn) error { return nil })
	if ok, why := l.health(); ok || why != "listener tcp-0 stopped accepting connections" {
		t.Fatalf("stopped: healthy %v, %q", ok, why)
	}
	closed := &listener{Listener: stoppingListener{listeners.NewMockListener("tcp-1", "127.0.0.1:0")},
		pending: l.pending, acceptErrors: l.acceptErrors, log: l.log}
	closed.Close(func(string) {})
	closed.Serve(func(string, net.Conn) error { return nil })
	if ok, why := closed.health(); !ok {
		t.Fatalf("a closed listener is reported: %s", why)
	}
}

// TestAnnouncedLengthCostsNothing: a socket that announces a CONNECT of
// max_packet_size and then sends a few bytes holds memory for what it sent,
// not for what it announced (mochi allocated the whole length at once, so
// each such socket held 1MB until idle_timeout).
func TestAnnouncedLengthCostsNothing(t *testing.T) {
	b, _ := startBroker(t, brokerConfig(t, `[broker]
listeners = [{ address = "127.0.0.1:0" }]
max_packet_size = "1MB"
persistence = false
[broker.auth]
allow_anonymous = true
`))
	const socks = 100
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, socks)
	for i := range conns {
		conns[i] = dial(t, b.Addrs()[0])
		defer conns[i].Close()
		// CONNECT, remaining length 1,000,000 (varint c0 84 3d), 10 bytes of it.
		if _, err := conns[i].Write([]byte{0x10, 0xc0, 0x84, 0x3d, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60}); err != nil {
			t.Fatal(err)
		}
	}
	// mochi counts a packet as received before it allocates and reads it.
	testkit.WaitFor(t, 10*time.Second, "every socket's packet being read", func() bool {
		return b.Info().PacketsReceived >= socks
	})
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > socks*256<<10 {
		t.Fatalf("%d sockets that announced 1MB and sent 10 bytes hold %d MB of heap", socks, grew>>20)
	}
}
