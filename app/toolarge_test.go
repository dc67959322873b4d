package app

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/producer"
)

// nearlyMB is a payload under the default max_packet_size (1MB) whose
// default record (${.}, the event as JSON) is over librdkafka's default
// message.max.bytes (1000000).
var nearlyMB = bytes.Repeat([]byte("a"), 999_900)

// checkOnlySmall waits until want records were delivered, then checks that
// the too-large one never entered the sink: one too_large drop, nothing
// buffered, and the topic's records (one partition) are the small ones in
// publish order, with nothing before them. Records are the event as JSON
// (${.}) unless raw, where they are the payload.
func checkOnlySmall(t *testing.T, s *producer.Sink, kafkaAddr, topic string, raw bool, want ...string) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, "the small publishes delivered", func() bool {
		return s.Counters.Success.Load() == int64(len(want))
	})
	if d := s.Counters.Dropped(); d[buffer.ReasonTooLarge] != 1 || len(d) != 1 {
		t.Fatalf("dropped %v, want one too_large", d)
	}
	if q := s.Queued(); q.Records != 0 {
		t.Fatalf("%d records left buffered", q.Records)
	}
	var got []string
	for _, r := range testkit.Consume(t, kafkaAddr, topic, len(want), 30*time.Second) {
		if raw {
			got = append(got, string(r.Value))
			continue
		}
		var pr testkit.PublishedRecord
		if err := json.Unmarshal(r.Value, &pr); err != nil {
			t.Fatal(err)
		}
		got = append(got, pr.Payload)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Kafka holds %.80q, want %q", got, want)
	}
}

// TestTooLargePublishRefusedV5: an MQTT 5 publish under max_packet_size
// whose record is over the connector's message.max.bytes gets PUBACK 0x83,
// is counted too_large and never reaches Kafka; the next publish on the same
// connection is acknowledged and delivered.
func TestTooLargePublishRefusedV5(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "big"))
	a := startApp(t, testkit.BaseConfig(t, kafkaAddr, "big"))
	conn := startRawV5(t, a.broker.Addrs()[0], "big-v5", func(out *bytes.Buffer) {
		testkit.RawPublishV5(t, out, "t/big", 1, nearlyMB)
		testkit.RawPublishV5(t, out, "t/big", 2, []byte("small"))
	})
	if got := readPubacksInOrder(t, conn, 2); got[0] != 0x83 || got[1] != 0 {
		t.Fatalf("PUBACK reasons % x, want 83 00", got)
	}
	checkOnlySmall(t, a.sinks[0].sink, kafkaAddr, "big", false, "small")
}

// TestTooLargePublishRefusedV311: MQTT 3.1.1 has no negative PUBACK, so the
// too-large publish gets none; the connection stays up and the publishes
// after it are acknowledged and delivered.
func TestTooLargePublishRefusedV311(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "big"))
	a := startApp(t, testkit.BaseConfig(t, kafkaAddr, "big"))
	conn := startRaw311(t, a.broker.Addrs()[0], "big-311")
	var out bytes.Buffer
	testkit.RawPublish(t, &out, "t/big", 1, 1, string(nearlyMB))
	testkit.RawPublish(t, &out, "t/big", 1, 2, "small-1")
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	// PUBACKs keep publish order: the first one being 2's proves 1 has none.
	if id := readPuback311(t, conn); id != 2 {
		t.Fatalf("first PUBACK is for packet %d, want 2 (none for the refused 1)", id)
	}
	out.Reset()
	testkit.RawPublish(t, &out, "t/big", 1, 3, "small-2")
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatalf("the connection was closed after the refusal: %v", err)
	}
	if id := readPuback311(t, conn); id != 3 {
		t.Fatalf("PUBACK for packet %d, want 3", id)
	}
	checkOnlySmall(t, a.sinks[0].sink, kafkaAddr, "big", false, "small-1", "small-2")
}

// payloadRule is one rule on t/# feeding sinks whose records are the bare
// payload, without key, so that a record's size is its payload's plus
// librdkafka's framing (36 bytes).
func payloadRule(sinks ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n[[rules]]\nid = \"r1\"\nsql = 'SELECT * FROM \"t/#\"'\nactions = [")
	for i, s := range sinks {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", "kafka_producer:"+s)
	}
	b.WriteString("]\n")
	return b.String()
}

func payloadSink(name, connector, topic string) string {
	return fmt.Sprintf("\n[[sinks]]\nname = %q\nconnector = %q\ntopic = %q\nkey = \"\"\nvalue = \"${payload}\"\n",
		name, connector, topic)
}

// TestTooLargeAtConnectorMessageMaxBytes: a connector's message.max.bytes
// set in its properties is the limit, to the byte: a record exactly at it is
// acknowledged and delivered, one byte more is refused with 0x83.
func TestTooLargeAtConnectorMessageMaxBytes(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "edge"))
	const limit, framing = 5000, 36
	a := startApp(t, testkit.ConfigHead(t, kafkaAddr, "1s", fmt.Sprintf(`"message.max.bytes" = "%d"`, limit))+
		payloadRule("s1")+payloadSink("s1", "k", "edge"))
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "edge", nil)
	atLimit := strings.Repeat("x", limit-framing)
	for _, p := range []struct {
		payload string
		reason  byte
	}{{atLimit, 0}, {atLimit + "x", 0x83}, {"small", 0}} {
		if got := testkit.Publish(t, c, "t/edge", 1, []byte(p.payload)).ReasonCode; got != p.reason {
			t.Fatalf("publish of %d bytes: PUBACK %#x, want %#x", len(p.payload), got, p.reason)
		}
	}
	checkOnlySmall(t, a.sinks[0].sink, kafkaAddr, "edge", true, atLimit, "small")
}

// TestTooLargeForOneSinkRefusedForAll: a publish two sinks read, one of
// which cannot send it, is refused whole: the other sink never holds it.
func TestTooLargeForOneSinkRefusedForAll(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "wide", "narrow"))
	cfg := testkit.ConfigHead(t, kafkaAddr, "1s", "") + fmt.Sprintf(`
[[connectors]]
name = "k2"
bootstrap_hosts = %q
[connectors.properties]
"message.max.bytes" = "5000"
`, kafkaAddr) + payloadRule("wide", "narrow") + payloadSink("wide", "k", "wide") + payloadSink("narrow", "k2", "narrow")
	a := startApp(t, cfg)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "both", nil)
	if got := testkit.Publish(t, c, "t/x", 1, bytes.Repeat([]byte("y"), 6000)).ReasonCode; got != 0x83 {
		t.Fatalf("publish too large for one sink: PUBACK %#x, want 0x83", got)
	}
	if got := testkit.Publish(t, c, "t/x", 1, []byte("small")).ReasonCode; got != 0 {
		t.Fatalf("next publish: PUBACK %#x", got)
	}
	wide, narrow := a.sinks[0].sink, a.sinks[1].sink
	if wide.Name() != "wide" {
		wide, narrow = narrow, wide
	}
	checkOnlySmall(t, narrow, kafkaAddr, "narrow", true, "small")
	testkit.WaitFor(t, 30*time.Second, "the small publish delivered by the other sink", func() bool {
		return wide.Counters.Success.Load() >= 1
	})
	if m, d := wide.Counters.Matched.Load(), wide.Counters.DroppedTotal(); m != 1 || d != 0 {
		t.Fatalf("the sink that could send it: matched %d, dropped %d; want 1 and 0", m, d)
	}
	if got := testkit.Consume(t, kafkaAddr, "wide", 1, 30*time.Second); string(got[0].Value) != "small" {
		t.Fatalf("first record of the other sink's topic is %d bytes, want the small publish", len(got[0].Value))
	}
}

// startRaw311 connects a raw MQTT 3.1.1 client and reads its CONNACK.
func startRaw311(t *testing.T, addr, clientID string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var out bytes.Buffer
	testkit.RawConnect(t, &out, 4, clientID)
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if typ, body := readRawPacket(t, conn); typ != packets.Connack || body[1] != 0 {
		t.Fatalf("CONNACK: type %d body % x", typ, body)
	}
	return conn
}

// readPuback311 reads one packet, requires a PUBACK and returns its packet id.
func readPuback311(t *testing.T, conn net.Conn) uint16 {
	t.Helper()
	typ, body := readRawPacket(t, conn)
	if typ != packets.Puback || len(body) != 2 {
		t.Fatalf("packet type %d body % x, not an MQTT 3.1.1 PUBACK", typ, body)
	}
	return binary.BigEndian.Uint16(body)
}
