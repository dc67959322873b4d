package broker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// rawClient speaks MQTT with mochi's own codec, so that a test sends
// exactly the packets a hostile client would.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	v    byte
}

// rawOn is a rawClient of protocol version v over conn, closed when the
// test ends.
func rawOn(t testing.TB, conn net.Conn, v byte) *rawClient {
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), v: v}
}

// rawConn connects with protocol version v; the CONNACK's reason code is
// returned, or an error if the broker closed the connection without one.
func rawConn(t testing.TB, addr string, v byte, id string, clean bool, will string) (*rawClient, byte, error) {
	t.Helper()
	c := rawOn(t, dial(t, addr), v)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: v,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: clean, Keepalive: 30, ClientIdentifier: id}}
	if v == 5 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 3600, true
	}
	if will != "" {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, will, []byte("gone")
	}
	c.put(pk)
	ack, err := c.read()
	if err != nil {
		return c, 0, err
	}
	if ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("got packet type %d, want a CONNACK", ack.FixedHeader.Type)
	}
	return c, ack.ReasonCode, nil
}

// read returns the next packet from the broker; io.EOF (or a reset) when
// the broker closed the connection.
func (c *rawClient) read() (packets.Packet, error) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var pk packets.Packet
	b, err := c.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		c.t.Fatal(err)
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = c.v
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return pk, nil
}

// expect reads the next packet and fails unless it has type typ.
func (c *rawClient) expect(typ byte) packets.Packet {
	c.t.Helper()
	pk, err := c.read()
	if err != nil {
		c.t.Fatalf("want packet type %d, got %v", typ, err)
	}
	if pk.FixedHeader.Type != typ {
		c.t.Fatalf("got packet type %d, want %d", pk.FixedHeader.Type, typ)
	}
	return pk
}

// expectClosed fails unless the broker closes the connection, after a
// DISCONNECT with reason code (MQTT 5) when reason is not 0.
func (c *rawClient) expectClosed(reason byte) {
	c.t.Helper()
	if reason != 0 {
		if pk := c.expect(packets.Disconnect); pk.ReasonCode != reason {
			c.t.Fatalf("DISCONNECT reason %#x, want %#x", pk.ReasonCode, reason)
		}
	}
	pk, err := c.read()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open: got packet type %d, err %v", pk.FixedHeader.Type, err)
	}
}

func (c *rawClient) subscribe(id uint16, filters ...string) []byte {
	c.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: 1})
	}
	c.put(pk)
	return c.expect(packets.Suback).ReasonCodes
}

func (c *rawClient) publish(id uint16, topic string, qos byte) {
	c.t.Helper()
	c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, PacketID: id, TopicName: topic, Payload: []byte("p")})
}

func (c *rawClient) unsubscribe(id uint16, filters ...string) {
	c.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f})
	}
	c.put(pk)
}

// levels is a topic of n levels.
func levels(n int) string { return strings.Repeat("a/", n-1) + "a" }

// TestTopicLimits: topic names and filters over max_topic_levels or
// max_topic_length, in PUBLISH, SUBSCRIBE, UNSUBSCRIBE and wills, are
// refused with MQTT 5's reason codes or, where MQTT 3.1.1 has none, a
// closed connection, before they cost anything; they are counted, and
// other clients are not held up.
func TestTopicLimits(t *testing.T) {
	b, rec := startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ address = "127.0.0.1:0" }]
[broker.auth]
allow_anonymous = true
`, t.TempDir())))
	addr := b.Addrs()[0]
	deep := levels(20000)          // over max_topic_length (4096) too
	deeper := levels(129)          // over max_topic_levels (128) only
	widest := levels(128)          // at max_topic_levels
	shared := "$share/g/" + widest // the share prefix's levels do not count
	var box inbox
	other := testkit.MQTTClient(t, addr, "other", box.add)
	if rc := testkit.Subscribe(t, other, "ok/#"); rc != 1 {
		t.Fatalf("subscribe ok/#: %#x", rc)
	}

	c5, rc, err := rawConn(t, addr, 5, "v5", true, "")
	if err != nil || rc != 0 {
		t.Fatalf("connect: %#x, %v", rc, err)
	}
	if got, want := c5.subscribe(1, deep, "ok/#", deeper+"/#", deeper, widest, shared), []byte{0x8f, 1, 0x8f, 0x8f, 1, 1}; !bytes.Equal(got, want) {
		t.Fatalf("MQTT 5 SUBACK %#x, want %#x", got, want)
	}
	c5.publish(2, deep, 1)
	if pk := c5.expect(packets.Puback); pk.PacketID != 2 || pk.ReasonCode != 0x90 {
		t.Fatalf("PUBACK %d %#x, want 2 0x90", pk.PacketID, pk.ReasonCode)
	}
	c5.publish(3, deeper, 2)
	if pk := c5.expect(packets.Pubrec); pk.PacketID != 3 || pk.ReasonCode != 0x90 {
		t.Fatalf("PUBREC %d %#x, want 3 0x90", pk.PacketID, pk.ReasonCode)
	}
	// A publish on another connection is not held up, and reaches c5.
	pub(t, other, "ok/1", 1, false, "fine")
	if pk := c5.expect(packets.Publish); pk.TopicName != "ok/1" {
		t.Fatalf("c5 got a publish to %q", pk.TopicName)
	}
	c5.unsubscribe(4, deep, "ok/#")
	if pk := c5.expect(packets.Unsuback); pk.PacketID != 4 || !bytes.Equal(pk.ReasonCodes, []byte{0x8f, 0}) {
		t.Fatalf("UNSUBACK %d %#x, want 4 [0x8f 0]", pk.PacketID, pk.ReasonCodes)
	}
	// QoS 0 has no acknowledgement to refuse with: DISCONNECT 0x90.
	c5.publish(0, deep, 0)
	c5.expectClosed(0x90)

	// MQTT 3.1.1: SUBACK 0x80 for the filter; a publish or unsubscribe closes.
	c3, rc, err := rawConn(t, addr, 4, "v3", true, "")
	if err != nil || rc != 0 {
		t.Fatalf("connect: %#x, %v", rc, err)
	}
	if got, want := c3.subscribe(1, deep, "ok/#", deeper), []byte{0x80, 1, 0x80}; !bytes.Equal(got, want) {
		t.Fatalf("MQTT 3.1.1 SUBACK %#x, want %#x", got, want)
	}
	c3.publish(2, deep, 1)
	c3.expectClosed(0)
	c3, _, _ = rawConn(t, addr, 4, "v3", true, "")
	c3.unsubscribe(1, deeper)
	c3.expectClosed(0)
	c3, _, _ = rawConn(t, addr, 4, "v3", true, "")
	c3.publish(0, deeper, 0)
	c3.expectClosed(0)

	// Wills: CONNACK 0x90 (MQTT 5); MQTT 3.1.1 has no return code for it.
	if _, rc, err := rawConn(t, addr, 5, "w5", true, deep); err != nil || rc != 0x90 {
		t.Fatalf("MQTT 5 will over the limit: CONNACK %#x, %v; want 0x90", rc, err)
	}
	if _, rc, err := rawConn(t, addr, 4, "w3", true, deeper); err == nil {
		t.Fatalf("MQTT 3.1.1 will over the limit: CONNACK %#x, want the connection closed", rc)
	}
	if _, rc, err := rawConn(t, addr, 4, "w3", true, widest); err != nil || rc != 0 {
		t.Fatalf("MQTT 3.1.1 will at the limit: CONNACK %#x, %v", rc, err)
	}

	pub(t, other, "ok/2", 1, false, "still fine")
	testkit.WaitFor(t, 5*time.Second, "deliveries", func() bool { return len(box.got()) == 2 })
	if got, want := rec.got(), []string{"ok/1", "ok/2"}; !slices.Equal(got, want) {
		t.Fatalf("the bridge got %d topics, want %v", len(got), want)
	}
	refused := b.Refused()
	if refused[reasonTopicLength] != 7 || refused[reasonTopicLevels] != 7 {
		t.Fatalf("refused %v, want max_topic_length 7, max_topic_levels 7", refused)
	}
}

// TestClientIDLimit: a client id over max_clientid_len is refused with
// CONNACK 0x85 (MQTT 3.1.1: 0x02) and counted.
func TestClientIDLimit(t *testing.T) {
	b, _ := startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ address = "127.0.0.1:0" }]
max_clientid_len = 64
[broker.auth]
allow_anonymous = true
`, t.TempDir())))
	addr := b.Addrs()[0]
	for _, tc := range []struct {
		v    byte
		id   string
		want byte
	}{{5, strings.Repeat("i", 65), 0x85}, {4, strings.Repeat("i", 65), 0x02}, {5, strings.Repeat("i", 64), 0}, {4, strings.Repeat("j", 64), 0}} {
		if _, rc, err := rawConn(t, addr, tc.v, tc.id, true, ""); err != nil || rc != tc.want {
			t.Errorf("MQTT %d, id of %d bytes: CONNACK %#x, %v; want %#x", tc.v, len(tc.id), rc, err, tc.want)
		}
	}
	if n := b.Refused()[reasonClientIDLen]; n != 2 {
		t.Fatalf("max_clientid_len refusals %d, want 2", n)
	}
}

// TestTopicCheckAllocates: the check costs no allocation, whatever its input.
func TestTopicCheckAllocates(t *testing.T) {
	h := &limitsHook{maxLevels: 128, maxLength: 65535}
	for _, topic := range []string{levels(20000), "$share/g/" + levels(128), strings.Repeat("x", 70000)} {
		if n := testing.AllocsPerRun(10, func() { h.exceeds(topic, true) }); n != 0 {
			t.Errorf("%d allocations for a topic of %d bytes", int(n), len(topic))
		}
	}
}

// TestInlinePublishTopicLimits: a Kafka source's or a republish action's
// topic, rendered from data, is held to the limits a device's is.
func TestInlinePublishTopicLimits(t *testing.T) {
	b, rec := startBroker(t, brokerConfig(t, "[broker]\nlisteners = [{address = \"127.0.0.1:0\"}]\npersistence = false\nmax_topic_levels = 4\nmax_topic_length = 64\n[broker.auth]\nallow_anonymous = true\n"))
	deep := strings.Repeat("a/", 4) + "a"
	if err := b.Publish(deep, []byte("x"), false, 0, nil); !errors.Is(err, ErrTopicLimit) {
		t.Fatalf("publish to %d levels: %v, want ErrTopicLimit", strings.Count(deep, "/")+1, err)
	}
	if err := b.Publish(strings.Repeat("a", 65), []byte("x"), false, 0, nil); !errors.Is(err, ErrTopicLimit) {
		t.Fatalf("publish to 65 bytes: %v, want ErrTopicLimit", err)
	}
	if err := b.Publish("a/b/c/d", []byte("x"), false, 0, nil); err != nil {
		t.Fatalf("publish at the limit: %v", err)
	}
	if got := rec.got(); len(got) != 1 || got[0] != "a/b/c/d" {
		t.Fatalf("rules saw %q, want only a/b/c/d", got)
	}
}
