package broker

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// fuzzConnect is a valid clean-start CONNECT of an MQTT version.
func fuzzConnect(f *testing.F, version byte) []byte {
	var b bytes.Buffer
	testkit.RawConnect(f, &b, version, "fuzz")
	return b.Bytes()
}

// FuzzConnection writes a byte stream into a connection of a running
// broker, after a valid MQTT 3.1.1 or 5 CONNECT or none, as a client on
// the internet can: the broker must neither panic nor stop serving another
// client, which completes a QoS 1 PUBLISH/PUBACK round trip after each
// input.
func FuzzConnection(f *testing.F) {
	b, _ := startBroker(f, brokerConfig(f, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ address = "127.0.0.1:0" }]
[broker.auth]
allow_anonymous = true
`, f.TempDir())))
	addr := b.Addrs()[0]
	// An id no input guesses, so that no input takes its session over.
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		f.Fatal(err)
	}
	probe := testkit.MQTTClient(f, addr, "probe-"+hex.EncodeToString(id[:]), nil)
	prefixes := [][]byte{nil, fuzzConnect(f, 4), fuzzConnect(f, 5)}

	publish := func(version byte, topic string, qos byte, payload string) []byte {
		var w bytes.Buffer
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, ProtocolVersion: version,
			TopicName: topic, Payload: []byte(payload)}
		if qos > 0 {
			pk.PacketID = 1
		}
		if err := pk.PublishEncode(&w); err != nil {
			f.Fatal(err)
		}
		return w.Bytes()
	}
	p4 := publish(4, "t/a", 1, "x")
	f.Add(uint8(0), fuzzConnect(f, 4))
	f.Add(uint8(0), append(fuzzConnect(f, 5), publish(5, "t/b", 1, "y")...))
	f.Add(uint8(1), p4)
	f.Add(uint8(2), publish(5, "t/+", 2, "z"))
	f.Add(uint8(1), p4[:len(p4)-2])                               // truncated
	f.Add(uint8(0), []byte{0x10, 0xff, 0xff, 0xff, 0x7f})         // CONNECT of 256 MB
	f.Add(uint8(1), []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01})   // a remaining length of five bytes
	f.Add(uint8(2), []byte{0x82, 0x06, 0, 1, 0, 1, '#', 1, 0xe0}) // SUBSCRIBE, then a DISCONNECT cut short
	f.Add(uint8(0), []byte("GET / HTTP/1.1\r\n\r\n"))

	f.Fuzz(func(t *testing.T, prefix uint8, data []byte) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		in := append(bytes.Clone(prefixes[int(prefix)%len(prefixes)]), data...)
		_ = conn.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := conn.Write(in); err == nil {
			// The end of the stream: the broker closes the connection then.
			_ = conn.(*net.TCPConn).CloseWrite()
			_, _ = io.Copy(io.Discard, conn) // until the broker closes it or the deadline
		}
		conn.Close()
		if r := pub(t, probe, "probe/t", 1, false, "alive"); r.ReasonCode != 0 {
			t.Fatalf("probe publish after % x: reason %#x", in, r.ReasonCode)
		}
	})
}
