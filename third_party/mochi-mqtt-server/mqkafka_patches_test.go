package mqtt

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestMqkafkaWriteEncodedAfterBuffered: packets WritePacket left in the
// client's write buffer (it buffers while messages to the client are
// queued) go out before what WriteEncoded writes, so PUBACKs keep their
// order.
func TestMqkafkaWriteEncodedAfterBuffered(t *testing.T) {
	near, far := net.Pipe()
	defer near.Close()
	defer far.Close()
	s := New(nil)
	cl := s.NewClient(near, "t", "c1", false)
	cl.Net.outbuf = bytes.NewBuffer([]byte{0x40, 2, 0, 1})
	done := make(chan error, 1)
	go func() { done <- cl.WriteEncoded([]byte{0x40, 2, 0, 2}, 1, 5*time.Second) }()
	_ = far.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 8)
	if _, err := io.ReadFull(far, got); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x40, 2, 0, 1, 0x40, 2, 0, 2}; !bytes.Equal(got, want) {
		t.Fatalf("wrote % x, want % x", got, want)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if cl.Net.outbuf != nil {
		t.Fatal("write buffer not flushed")
	}
}
