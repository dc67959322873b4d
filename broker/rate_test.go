package broker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/rule"
)

// stamps is the Publisher: it keeps when each publish reached it, by topic.
type stamps struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (s *stamps) Matches(string) bool { return true }

func (s *stamps) Publish(_ context.Context, _ ack.Wait, ev *rule.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at == nil {
		s.at = map[string][]time.Time{}
	}
	s.at[ev.Topic] = append(s.at[ev.Topic], time.Now())
	return nil
}

func (s *stamps) of(topic string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at[topic]...)
}

// encodePublish is a QoS 0 MQTT 3.1.1 PUBLISH.
func encodePublish(t testing.TB, topic string, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	testkit.RawPublish(t, &buf, topic, 0, 0, string(payload))
	return buf.Bytes()
}

// TestMaxConnRate: a burst of connections over max_conn_rate is accepted
// no faster than the rate allows (a second's worth at once), by TCP and
// WebSocket listeners, each one that waited is counted, and a client
// connects fine afterwards.
func TestMaxConnRate(t *testing.T) {
	const rate, n = 10, 30
	for _, typ := range []string{"tcp", "ws"} {
		t.Run(typ, func(t *testing.T) {
			b, _ := startBroker(t, brokerConfig(t, fmt.Sprintf("[broker]\ndata_dir = %q\nlisteners = [{ type = %q, address = \"127.0.0.1:0\" }]\nmax_conn_rate = \"%d/s\"\n[broker.auth]\nallow_anonymous = true\n",
				t.TempDir(), typ, rate)))
			addr := b.Addrs()[0]
			var connect bytes.Buffer
			testkit.RawConnect(t, &connect, 4, "")
			// A TCP handshake is completed by the kernel, which holds the
			// connection until the broker accepts it; a WebSocket upgrade
			// waits for the accept too.
			session := func() error {
				var c net.Conn
				var err error
				if typ == "ws" {
					c, _, err = wsDial(t, "ws://"+addr+"/mqtt", nil)
				} else {
					c, err = net.DialTimeout("tcp", addr, 5*time.Second)
				}
				if err != nil {
					return err
				}
				t.Cleanup(func() { c.Close() })
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var ack [4]byte
				if _, err := c.Write(connect.Bytes()); err != nil {
					return err
				}
				if _, err := io.ReadFull(c, ack[:]); err != nil {
					return err
				}
				if ack != [4]byte{0x20, 2, 0, 0} {
					return fmt.Errorf("CONNACK % x", ack)
				}
				return nil
			}
			start := time.Now()
			acked := make([]time.Duration, n)
			errs := make(chan error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := session(); err != nil {
						errs <- fmt.Errorf("client %d: %w", i, err)
						return
					}
					acked[i] = time.Since(start)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			sort.Slice(acked, func(i, j int) bool { return acked[i] < acked[j] })
			for k, at := range acked {
				// k+1 connections accepted by at: at most a second's worth plus the rate since.
				if limit := rate + rate*at.Seconds() + 1; float64(k+1) > limit {
					t.Fatalf("%d connections accepted within %v, more than max_conn_rate allows (%.1f)", k+1, at, limit)
				}
			}
			if got := b.Refused()[reasonConnRate]; got < n-2*rate || got > n-rate {
				t.Fatalf("refused %s = %d, want the connections past the first second's worth (%d to %d)", reasonConnRate, got, n-2*rate, n-rate)
			}
			if err := session(); err != nil {
				t.Fatalf("a client within the rate: %v", err)
			}
		})
	}
}

// TestClientRates: a client publishing QoS 0 as fast as it can is held,
// by not being read from, to messages_rate or bytes_rate (a second's worth
// at once), while another client's publishes are not held up by it.
func TestClientRates(t *testing.T) {
	for _, tc := range []struct {
		name, limits string
		payload      int
		// allowed is how many of the flood's publishes may have arrived
		// by elapsed, each packetSize bytes.
		allowed func(elapsed time.Duration, packetSize int) float64
		reason  string
	}{
		{"messages_rate", "messages_rate = \"50/s\"\n", 10,
			func(e time.Duration, _ int) float64 { return 50 + 50*e.Seconds() }, reasonMessagesRate},
		{"bytes_rate", "max_packet_size = \"16KB\"\nbytes_rate = \"32KB/s\"\n", 1000,
			func(e time.Duration, size int) float64 { return (32768 + 32768*e.Seconds()) / float64(size) }, reasonBytesRate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &stamps{}
			b := startBrokerWith(t, brokerConfig(t, fmt.Sprintf("[broker]\ndata_dir = %q\nlisteners = [{ address = \"127.0.0.1:0\" }]\n%s[broker.auth]\nallow_anonymous = true\n",
				t.TempDir(), tc.limits)), pub, nil)
			addr := b.Addrs()[0]
			flood, code, err := rawConn(t, addr, 4, "flood", true, "")
			if err != nil || code != 0 {
				t.Fatalf("CONNACK %#x, %v", code, err)
			}
			packet := encodePublish(t, "flood", make([]byte, tc.payload))
			start := time.Now()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, err := flood.conn.Write(packet); err != nil {
						return // closed by the test
					}
				}
			}()
			defer func() { flood.conn.Close(); <-done }()
			// Two seconds' worth, past the first second's burst.
			want := int(2 * tc.allowed(0, len(packet)))
			testkit.WaitFor(t, 8*time.Second, "the flood's publishes", func() bool { return len(pub.of("flood")) >= want })

			// Another client publishes as the flood goes on: it has its own
			// second's worth, so its publishes are not held up.
			other, code, err := rawConn(t, addr, 4, "other", true, "")
			if err != nil || code != 0 {
				t.Fatalf("CONNACK %#x, %v", code, err)
			}
			small := encodePublish(t, "other", make([]byte, tc.payload))
			const others = 20
			sent := time.Now()
			if _, err := other.conn.Write(bytes.Repeat(small, others)); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 5*time.Second, "the other client's publishes", func() bool { return len(pub.of("other")) == others })
			// Held to a rate shared with the flood, they would take a second.
			if took := pub.of("other")[others-1].Sub(sent); took >= time.Second {
				t.Fatalf("the other client's %d publishes took %v", others, took)
			}

			got := pub.of("flood")
			for i, at := range got {
				if elapsed := at.Sub(start); float64(i+1) > tc.allowed(elapsed, len(packet))+1 {
					t.Fatalf("%d publishes of the flood arrived within %v, more than %s allows (%.1f)", i+1, elapsed, tc.name, tc.allowed(elapsed, len(packet)))
				}
			}
			if n := b.Refused()[tc.reason]; n == 0 {
				t.Fatalf("refused %s = 0, want the pauses counted", tc.reason)
			}
		})
	}
}

// TestLimitedConnHalfCloses: a rate-limited connection can still close its
// writing side, so that mochi's linger delivers a last packet (DISCONNECT,
// refusing CONNACK) before the close instead of a reset.
func TestLimitedConnHalfCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rates := &clientRates{messages: 10, bytes: 1 << 20}
	lc := rates.wrap(server)
	defer lc.Close()
	if _, err := lc.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	if !mqtt.CloseWrite(lc) {
		t.Fatal("a rate-limited connection cannot half-close")
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "last" {
		t.Fatalf("client read %q, %v; want the last bytes then EOF", got, err)
	}
}
