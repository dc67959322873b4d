package app

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestPubackOrderDisk writes QoS 1 publishes to a disk-mode sink back to back
// on one raw MQTT 3.1.1 connection, mixed with publishes no rule reads and
// with QoS 0 ones, and with a receive maximum far below the number in flight:
// PUBACKs are written after the fsync, off the connection's read loop, so
// they must still come one per QoS 1 publish and in publish order, and every
// bridged publish must reach Kafka.
func TestPubackOrderDisk(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "acks"))
	cfg := withBuffer(testkit.BaseConfig(t, kafkaAddr, "acks"), `mode = "disk"`)
	cfg = strings.Replace(cfg, "[broker]\n", "[broker]\nreceive_maximum = 16\n", 1)
	a := startApp(t, cfg)
	// The sink learns a topic's partitions on its first record; until then
	// records wait in the topic's holding queue, which answers in the call.
	testkit.Publish(t, testkit.MQTTClient(t, a.broker.Addrs()[0], "warm-up", nil), "t/raw", 1, []byte("warm-up"))
	testkit.Consume(t, kafkaAddr, "acks", 1, 30*time.Second)

	conn, err := net.DialTimeout("tcp", a.broker.Addrs()[0], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out bytes.Buffer
	testkit.RawConnect(t, &out, 4, "raw-acks")
	const n = 600
	bridged := 1 // the warm-up
	for i := 1; i <= n; i++ {
		topic := "t/raw"
		if i%3 == 0 {
			topic = "other/raw" // no rule reads it
		} else {
			bridged++
		}
		testkit.RawPublish(t, &out, topic, 1, uint16(i), fmt.Sprintf("q1-%d", i))
		if i%5 == 0 {
			testkit.RawPublish(t, &out, "t/raw", 0, 0, fmt.Sprintf("q0-%d", i))
			bridged++
		}
	}
	go func() { _, _ = conn.Write(out.Bytes()) }()

	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	connack := make([]byte, 4)
	if _, err := io.ReadFull(conn, connack); err != nil || connack[0] != 0x20 || connack[3] != 0 {
		t.Fatalf("CONNACK % x: %v", connack, err)
	}
	acks := make([]byte, 4*n)
	if _, err := io.ReadFull(conn, acks); err != nil {
		t.Fatalf("reading %d PUBACKs: %v", n, err)
	}
	for i := range n {
		ack := acks[4*i : 4*i+4]
		if ack[0] != 0x40 || ack[1] != 2 {
			t.Fatalf("packet %d is % x, not a PUBACK", i, ack)
		}
		if id := binary.BigEndian.Uint16(ack[2:]); id != uint16(i+1) {
			t.Fatalf("PUBACK %d is for packet %d: out of publish order", i+1, id)
		}
	}

	seen := map[string]bool{}
	for _, r := range testkit.Consume(t, kafkaAddr, "acks", bridged, 30*time.Second) {
		var pr testkit.PublishedRecord
		if err := json.Unmarshal(r.Value, &pr); err != nil {
			t.Fatal(err)
		}
		seen[pr.Payload] = true
	}
	if len(seen) != bridged {
		t.Fatalf("%d distinct publishes in Kafka, want %d", len(seen), bridged)
	}
}

// readRawPacket reads one MQTT packet: its type and its body.
func readRawPacket(t *testing.T, r io.Reader) (byte, []byte) {
	t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		t.Fatalf("reading a packet: %v", err)
	}
	typ, n, shift := b[0]>>4, 0, 0
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			t.Fatalf("reading a packet length: %v", err)
		}
		n |= int(b[0]&0x7f) << shift
		if b[0]&0x80 == 0 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("reading a packet body: %v", err)
	}
	return typ, body
}

// readPubacksInOrder reads n MQTT 5 PUBACKs, requires them for packets 1..n
// in that order, and returns their reason codes.
func readPubacksInOrder(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	reasons := make([]byte, n)
	for i := range n {
		typ, body := readRawPacket(t, r)
		if typ != packets.Puback {
			t.Fatalf("packet %d has type %d, not PUBACK", i+1, typ)
		}
		if id := binary.BigEndian.Uint16(body); id != uint16(i+1) {
			t.Fatalf("PUBACK %d is for packet %d: out of publish order", i+1, id)
		}
		if len(body) > 2 {
			reasons[i] = body[2]
		}
	}
	return reasons
}

// startRawV5 connects a raw MQTT 5 client, sends the publishes encoded by
// add back to back and reads the CONNACK.
func startRawV5(t *testing.T, addr, clientID string, add func(*bytes.Buffer)) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var out bytes.Buffer
	testkit.RawConnect(t, &out, 5, clientID)
	add(&out)
	go func() { _, _ = conn.Write(out.Bytes()) }()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if typ, body := readRawPacket(t, conn); typ != packets.Connack || body[1] != 0 {
		t.Fatalf("CONNACK: type %d body % x", typ, body)
	}
	return conn
}

// TestPubackOrderWithACLDenialsV5 sends MQTT 5 publishes back to back,
// alternating a topic bridged to a disk-mode sink and one the ACL denies:
// mochi answers the denied ones itself (0x87), after the PUBACKs still
// waiting for the fsync.
func TestPubackOrderWithACLDenialsV5(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "acl"))
	cfg := withBuffer(testkit.BaseConfig(t, kafkaAddr, "acl"), `mode = "disk"`)
	cfg = strings.Replace(cfg, "allow_anonymous = true\n", `allow_anonymous = true
[[broker.acl]]
permission = "deny"
action = "publish"
topics = ["t/denied"]
[[broker.acl]]
permission = "allow"
topics = ["#"]
`, 1)
	a := startApp(t, cfg)
	testkit.Publish(t, testkit.MQTTClient(t, a.broker.Addrs()[0], "warm-up", nil), "t/raw", 1, []byte("warm-up"))
	testkit.Consume(t, kafkaAddr, "acl", 1, 30*time.Second)

	const n = 300
	conn := startRawV5(t, a.broker.Addrs()[0], "raw-acl", func(out *bytes.Buffer) {
		for i := 1; i <= n; i++ {
			topic := "t/raw"
			if i%3 == 0 {
				topic = "t/denied"
			}
			testkit.RawPublishV5(t, out, topic, uint16(i), fmt.Appendf(nil, "a%06d", i))
		}
	})
	for i, reason := range readPubacksInOrder(t, conn, n) {
		want := byte(0)
		if (i+1)%3 == 0 {
			want = 0x87
		}
		if reason != want {
			t.Fatalf("PUBACK %d: reason %#x, want %#x", i+1, reason, want)
		}
	}
}

// TestPubackOrderWithRefusalsV5 fills a disk-mode partition queue while
// Kafka is down with MQTT 5 publishes sent back to back: the ones that fit
// are acknowledged after the fsync, the rest refused (0x97) by the hook
// itself, and the PUBACKs must still come in publish order.
func TestPubackOrderWithRefusalsV5(t *testing.T) {
	port := testkit.FreePort(t)
	kc, kafkaAddr := testkit.NewKafka(t, port, kfake.SeedTopics(1, "ovf"))
	cfg := testkit.BaseConfig(t, kafkaAddr, "ovf")
	cfg = strings.Replace(cfg, `topic = "ovf"`, "topic = \"ovf\"\nvalue = \"${payload}\"\nkey = \"\"", 1)
	a := startApp(t, withBuffer(cfg, `mode = "disk"
per_partition_limit = "1KB"
overflow = "drop_new"`))
	s := a.sinks[0].sink
	testkit.Publish(t, testkit.MQTTClient(t, a.broker.Addrs()[0], "warm-up", nil), "t/ovf", 1, []byte("w00000000"))
	testkit.WaitFor(t, 30*time.Second, "the warm-up delivered", func() bool { return s.Counters.Success.Load() == 1 })
	kc.Close()

	const n = 60
	conn := startRawV5(t, a.broker.Addrs()[0], "raw-v5", func(out *bytes.Buffer) {
		for i := 1; i <= n; i++ {
			testkit.RawPublishV5(t, out, "t/ovf", uint16(i), fmt.Appendf(nil, "m%08d", i))
		}
	})
	accepted := 0
	for i, reason := range readPubacksInOrder(t, conn, n) {
		i++
		switch {
		case reason == 0 && accepted == i-1:
			accepted++
		case reason != 0x97 || i == 1:
			t.Fatalf("PUBACK %d: reason %#x after %d accepted; want accepted ones, then only 0x97", i, reason, accepted)
		}
	}
	if accepted != fitInKB {
		t.Fatalf("%d accepted, want the %d that fit in the queue", accepted, fitInKB)
	}
	if d := s.Counters.Dropped()[buffer.ReasonQueueFull]; d != int64(n-accepted) {
		t.Fatalf("%d refused, %d counted dropped", n-accepted, d)
	}
}
