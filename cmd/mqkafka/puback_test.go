package main

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

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// rawPublish encodes an MQTT 3.1.1 PUBLISH.
func rawPublish(t *testing.T, buf *bytes.Buffer, topic string, qos byte, id uint16, payload string) {
	t.Helper()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: qos},
		ProtocolVersion: 4,
		TopicName:       topic,
		PacketID:        id,
		Payload:         []byte(payload),
	}
	if err := pk.PublishEncode(buf); err != nil {
		t.Fatal(err)
	}
}

// TestPubackOrderDisk writes QoS 1 publishes to a disk-mode sink back to back
// on one raw MQTT 3.1.1 connection, mixed with publishes no rule reads and
// with QoS 0 ones, and with a receive maximum far below the number in flight:
// PUBACKs are written after the fsync, off the connection's read loop, so
// they must still come one per QoS 1 publish and in publish order, and every
// bridged publish must reach Kafka.
func TestPubackOrderDisk(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "acks"))
	cfg := withBuffer(baseConfig(t, kafkaAddr, "acks"), `mode = "disk"`)
	cfg = strings.Replace(cfg, "[broker]\n", "[broker]\nreceive_maximum = 16\n", 1)
	a := startApp(t, cfg)
	// The sink learns a topic's partitions on its first record; until then
	// records wait in the topic's holding queue, which answers in the call.
	publish(t, connectMQTT(t, a.broker.Addrs()[0], "warm-up", nil), "t/raw", 1, []byte("warm-up"))
	testkit.Consume(t, kafkaAddr, "acks", 1, 30*time.Second)

	conn, err := net.DialTimeout("tcp", a.broker.Addrs()[0], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out bytes.Buffer
	connect := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true,
			Keepalive: 30, ClientIdentifier: "raw-acks"},
	}
	if err := connect.ConnectEncode(&out); err != nil {
		t.Fatal(err)
	}
	const n = 600
	bridged := 1 // the warm-up
	for i := 1; i <= n; i++ {
		topic := "t/raw"
		if i%3 == 0 {
			topic = "other/raw" // no rule reads it
		} else {
			bridged++
		}
		rawPublish(t, &out, topic, 1, uint16(i), fmt.Sprintf("q1-%d", i))
		if i%5 == 0 {
			rawPublish(t, &out, "t/raw", 0, 0, fmt.Sprintf("q0-%d", i))
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
		var pr publishedRecord
		if err := json.Unmarshal(r.Value, &pr); err != nil {
			t.Fatal(err)
		}
		seen[pr.Payload] = true
	}
	if len(seen) != bridged {
		t.Fatalf("%d distinct publishes in Kafka, want %d", len(seen), bridged)
	}
}
