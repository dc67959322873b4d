package broker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// pipeClient is a mochi client whose connection's far end the test reads.
func pipeClient(t *testing.T, version byte) (*mqtt.Client, net.Conn) {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: testkit.Logger(t)})
	near, far := net.Pipe()
	t.Cleanup(func() { near.Close(); far.Close() })
	cl := srv.NewClient(near, "test", "c1", false)
	cl.Properties.ProtocolVersion = version
	return cl, far
}

// testAcks is a PUBACK queue of limit for a pipe client of an MQTT version,
// and the far end of its connection.
func testAcks(t *testing.T, version byte, limit int) (*connAcks, net.Conn) {
	t.Helper()
	cl, far := pipeClient(t, version)
	a := newAcks(limit, testkit.Logger(t))
	t.Cleanup(func() {
		a.forget(cl)
		a.wait()
	})
	return a.conn(cl), far
}

// readAcks reads exactly n bytes of PUBACKs from conn.
func readAcks(t *testing.T, conn net.Conn, n int) []byte {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("reading %d bytes of PUBACKs: %v", n, err)
	}
	return buf
}

func TestAcksKeepPublishOrder(t *testing.T) {
	c, far := testAcks(t, 5, 16)
	s := []*ackSlot{c.reserve(1), c.reserve(2), c.reserve(3), c.reserve(4)}

	// Durable out of order: nothing may be written before the first is.
	c.complete(s[2], false)
	c.complete(s[1], true)
	if !c.a.behind(c.cl) {
		t.Fatal("four PUBACKs pending, but the connection is not behind")
	}
	c.complete(s[0], false)
	got := readAcks(t, far, 4+5+4)
	want := []byte{0x40, 2, 0, 1, 0x40, 3, 0, 2, 0x80, 0x40, 2, 0, 3}
	if !bytes.Equal(got, want) {
		t.Fatalf("PUBACKs % x, want % x", got, want)
	}
	c.complete(s[3], false)
	if got := readAcks(t, far, 4); !bytes.Equal(got, []byte{0x40, 2, 0, 4}) {
		t.Fatalf("last PUBACK % x", got)
	}
	testkit.WaitFor(t, 5*time.Second, "queue empty", func() bool { return !c.a.behind(c.cl) })
}

// TestAcksCloseOldProtocolOnFailure: MQTT 3.1.1 has no negative PUBACK, so a
// publish that failed after the hook returned closes the connection once the
// PUBACKs before it are written.
func TestAcksCloseOldProtocolOnFailure(t *testing.T) {
	c, far := testAcks(t, 4, 16)
	s1, s2, s3 := c.reserve(7), c.reserve(8), c.reserve(9)
	c.complete(s2, true)
	c.complete(s3, false)
	c.complete(s1, false)
	if got := readAcks(t, far, 4); !bytes.Equal(got, []byte{0x40, 2, 0, 7}) {
		t.Fatalf("PUBACK % x, want the one before the failure", got)
	}
	_ = far.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := far.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the failed publish: read %d bytes, err %v; want the connection closed", n, err)
	}
	// mochi's Stop closes the socket before it marks the client closed.
	testkit.WaitFor(t, 5*time.Second, "client stopped", c.cl.Closed)
}

// TestAcksLimitWaits: a connection with limit PUBACKs pending waits in
// reserve until one is written.
func TestAcksLimitWaits(t *testing.T) {
	c, far := testAcks(t, 4, 2)
	s1 := c.reserve(1)
	c.reserve(2)
	third := make(chan *ackSlot)
	go func() { third <- c.reserve(3) }()
	select {
	case <-third:
		t.Fatal("a third PUBACK was queued over the limit of 2")
	case <-time.After(100 * time.Millisecond):
	}
	c.complete(s1, false)
	readAcks(t, far, 4)
	select {
	case s := <-third:
		if s.id != 3 {
			t.Fatalf("slot %d", s.id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reserve still waiting after a PUBACK was written")
	}
}

// TestAcksFlusherRestarts: a connection's PUBACK writer ends when idle and
// the next PUBACK starts another.
func TestAcksFlusherRestarts(t *testing.T) {
	c, far := testAcks(t, 5, 16)
	c.a.idle = 10 * time.Millisecond
	started := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.started
	}
	for id := uint16(1); id <= 3; id++ {
		s := c.reserve(id)
		c.settle(s)
		if got := readAcks(t, far, 4); !bytes.Equal(got, []byte{0x40, 2, 0, byte(id)}) {
			t.Fatalf("PUBACK % x, want packet %d", got, id)
		}
		testkit.WaitFor(t, 5*time.Second, "the idle writer to end", func() bool { return !started() })
	}
}

// TestAcksRefusedKeepsOrder: a publish the hook answers itself waits until
// the PUBACKs before it are written, and gets none from the writer.
func TestAcksRefusedKeepsOrder(t *testing.T) {
	c, far := testAcks(t, 5, 16)
	s1, s2 := c.reserve(1), c.reserve(2)
	refused := make(chan struct{})
	go func() {
		c.refuse(s2)
		close(refused)
	}()
	select {
	case <-refused:
		t.Fatal("the refusal went ahead of an earlier PUBACK")
	case <-time.After(50 * time.Millisecond):
	}
	c.complete(s1, false)
	if got := readAcks(t, far, 4); !bytes.Equal(got, []byte{0x40, 2, 0, 1}) {
		t.Fatalf("PUBACK % x, want packet 1", got)
	}
	select {
	case <-refused:
	case <-time.After(10 * time.Second):
		t.Fatal("refusal still waiting after the earlier PUBACK was written")
	}
	s3 := c.reserve(3)
	c.settle(s3)
	if got := readAcks(t, far, 4); !bytes.Equal(got, []byte{0x40, 2, 0, 3}) {
		t.Fatalf("PUBACK % x after the refusal, want packet 3 (none for 2)", got)
	}
}
