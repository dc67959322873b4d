package broker

// The conformance tests walk the normative statements of MQTT 5.0 and
// MQTT 3.1.1 (marked "3.1.1") that the broker is responsible for, with raw
// packets over TCP (TLS and WebSocket too where the transport matters).
// Each test, subtest or table row names the statements it checks.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// conformBroker starts an anonymous broker with receive_maximum 2 and
// max_packet_size 4096, on a TCP listener unless listeners says otherwise.
func conformBroker(t *testing.T, listeners string) (*Broker, *recorder, []string) {
	t.Helper()
	if listeners == "" {
		listeners = `[{ address = "127.0.0.1:0" }]`
	}
	b, rec := startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
persistence = false
listeners = %s
receive_maximum = 2
max_packet_size = 4096
[broker.auth]
allow_anonymous = true
`, t.TempDir(), listeners)))
	return b, rec, b.Addrs()
}

// v5connect is an MQTT 5 CONNECT.
func v5connect(id string, clean bool, sessionExpiry uint32) packets.Packet {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: clean, Keepalive: 30, ClientIdentifier: id}}
	if sessionExpiry > 0 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = sessionExpiry, true
	}
	return pk
}

// v3connect is an MQTT 3.1.1 CONNECT.
func v3connect(id string, clean bool) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: clean, Keepalive: 30, ClientIdentifier: id}}
}

// open sends pk (a CONNECT) over a new TCP connection to addr and returns
// the client and the broker's first packet (zero if it closed at once).
func open(t *testing.T, addr string, pk packets.Packet) (*rawClient, packets.Packet) {
	t.Helper()
	return openOn(t, dial(t, addr), pk)
}

func openOn(t *testing.T, conn net.Conn, pk packets.Packet) (*rawClient, packets.Packet) {
	t.Helper()
	c := rawOn(t, conn, pk.ProtocolVersion)
	c.put(pk)
	ack, _ := c.read()
	return c, ack
}

// session opens a session and fails unless the broker accepts it.
func session(t *testing.T, addr string, pk packets.Packet) (*rawClient, packets.Packet) {
	t.Helper()
	c, ack := open(t, addr, pk)
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("connect %q: got packet type %d reason %#x, want CONNACK 0", pk.Connect.ClientIdentifier, ack.FixedHeader.Type, ack.ReasonCode)
	}
	return c, ack
}

// put encodes and writes any packet.
func (c *rawClient) put(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = c.v
	pk.Mods.AllowResponseInfo = true // mochi's encoder leaves Response Topic and Correlation Data out otherwise
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		c.t.Fatalf("cannot send packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.putRaw(buf.Bytes())
}

// putRaw writes bytes as they are; the broker may have closed already.
func (c *rawClient) putRaw(b []byte) { _, _ = c.conn.Write(b) }

func (c *rawClient) ack(typ byte, id uint16) {
	c.t.Helper()
	c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: typ, Qos: map[bool]byte{true: 1}[typ == packets.Pubrel]}, PacketID: id})
}

// pub sends a PUBLISH.
func (c *rawClient) pub(id uint16, topic string, qos byte, retain bool, payload string, props packets.Properties) {
	c.t.Helper()
	c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		PacketID: id, TopicName: topic, Payload: []byte(payload), Properties: props})
}

// sub subscribes to one filter and returns the SUBACK's reason code.
func (c *rawClient) sub(id uint16, s packets.Subscription, subID int) byte {
	c.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id, Filters: packets.Subscriptions{s}}
	if subID > 0 {
		pk.Properties.SubscriptionIdentifier = []int{subID}
	}
	c.put(pk)
	ack := c.expect(packets.Suback)
	if ack.PacketID != id || len(ack.ReasonCodes) != 1 { // [MQTT-3.8.4-2] [MQTT-3.8.4-6]
		c.t.Fatalf("SUBACK id %d codes %v, want id %d and one code", ack.PacketID, ack.ReasonCodes, id)
	}
	return ack.ReasonCodes[0]
}

// ping round-trips a PINGREQ [MQTT-3.12.4-1]: every packet the broker
// sent before its PINGRESP is returned. Messages to a client are written
// by another goroutine than the PINGRESP, so ping shows what arrived by
// then, not all that will.
func (c *rawClient) ping() []packets.Packet {
	c.t.Helper()
	c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	var before []packets.Packet
	for {
		pk := c.next()
		if pk.FixedHeader.Type == packets.Pingresp {
			return before
		}
		before = append(before, pk)
	}
}

// next reads the next packet and fails if there is none.
func (c *rawClient) next() packets.Packet {
	c.t.Helper()
	pk, err := c.read()
	if err != nil {
		c.t.Fatalf("want a packet: %v", err)
	}
	return pk
}

// expectEnd fails unless the broker ends the connection in order: a reset
// would discard what the broker wrote last before the client read it.
func (c *rawClient) expectEnd() {
	c.t.Helper()
	pk, err := c.read()
	if err == nil {
		c.t.Fatalf("connection still open: got packet type %d reason %#x", pk.FixedHeader.Type, pk.ReasonCode)
	}
	var ce *websocket.CloseError
	if !errors.Is(err, io.EOF) && !(errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure) {
		c.t.Fatalf("connection ended with %v, want an orderly close (EOF)", err)
	}
}

// expectDisconnect fails unless the broker sends DISCONNECT with reason
// (MQTT 5; none if reason is -1, as for MQTT 3.1.1) and then closes.
func (c *rawClient) expectDisconnect(reason int) {
	c.t.Helper()
	if reason >= 0 {
		pk := c.expect(packets.Disconnect)
		if pk.ReasonCode != byte(reason) {
			c.t.Fatalf("DISCONNECT reason %#x, want %#x", pk.ReasonCode, reason)
		}
		if pk.Properties.SessionExpiryIntervalFlag {
			c.t.Fatal("the server's DISCONNECT has a Session Expiry Interval [MQTT-3.14.2-2]")
		}
	}
	c.expectEnd()
}

// frame prefixes body with a fixed header.
func frame(header byte, body []byte) []byte {
	out := []byte{header}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// rawPublish5 is an MQTT 5 PUBLISH with properties given as bytes.
func rawPublish5(topic string, qos byte, id uint16, props []byte, payload string) []byte {
	body := str(topic)
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	body = append(append(append(body, byte(len(props))), props...), payload...)
	return frame(packets.Publish<<4|qos<<1, body)
}

// rawConnect5 is a clean MQTT 5 CONNECT with properties given as bytes.
func rawConnect5(id string, props []byte) []byte {
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, byte(len(props))}, props...)
	return frame(packets.Connect<<4, append(body, str(id)...))
}

// TestConformReceiveMaximumInbound: a client that sends more QoS 2
// publishes than the broker's Receive Maximum without completing them is
// sent DISCONNECT 0x93, which it reads before an orderly close even with
// more publishes pipelined behind: over TCP, TLS, WebSocket and secure
// WebSocket [MQTT-3.3.4-7] (4.9, 4.13). QoS 0 publishes are not counted.
func TestConformReceiveMaximumInbound(t *testing.T) {
	ca := testkit.NewCA(t)
	srv := ca.Server(t, []net.IP{net.ParseIP("127.0.0.1")})
	_, rec, addrs := conformBroker(t, fmt.Sprintf(`[
  { type = "tcp", address = "127.0.0.1:0" },
  { type = "tls", address = "127.0.0.1:0", certfile = %[1]q, keyfile = %[2]q },
  { type = "ws", address = "127.0.0.1:0" },
  { type = "wss", address = "127.0.0.1:0", certfile = %[1]q, keyfile = %[2]q },
]`, srv.CertFile, srv.KeyFile))
	tc := &tls.Config{RootCAs: ca.Pool()}
	dialers := []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"tcp", func() (net.Conn, error) { return net.Dial("tcp", addrs[0]) }},
		{"tls", func() (net.Conn, error) { return tls.Dial("tcp", addrs[1], tc) }},
		{"ws", func() (net.Conn, error) { c, _, err := wsDial(t, "ws://"+addrs[2]+"/mqtt", nil); return c, err }},
		{"wss", func() (net.Conn, error) { c, _, err := wsDial(t, "wss://"+addrs[3]+"/mqtt", tc); return c, err }},
	}
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			conn, err := d.dial()
			if err != nil {
				t.Fatal(err)
			}
			c, ack := openOn(t, conn, v5connect("rm-"+d.name, true, 0))
			if ack.FixedHeader.Type != packets.Connack || ack.Properties.ReceiveMaximum != 2 {
				t.Fatalf("CONNACK %+v, want Receive Maximum 2", ack.Properties)
			}
			var burst []byte
			for id := uint16(1); id <= 2; id++ {
				burst = append(burst, rawPublish5("rm/"+d.name, 2, id, nil, "x")...)
			}
			burst = append(burst, rawPublish5("rm/"+d.name+"/qos0", 0, 0, nil, "x")...)
			// More than the broker reads ahead, so that some is unread
			// when it has sent DISCONNECT.
			for id := uint16(3); id <= 40; id++ {
				burst = append(burst, rawPublish5("rm/"+d.name, 2, id, nil, strings.Repeat("x", 2000))...)
			}
			c.putRaw(burst)
			for id := uint16(1); id <= 2; id++ {
				if pk := c.expect(packets.Pubrec); pk.PacketID != id || pk.ReasonCode != 0 {
					t.Fatalf("PUBREC %d %#x, want %d 0", pk.PacketID, pk.ReasonCode, id)
				}
			}
			c.expectDisconnect(0x93)
			if n := len(slices.DeleteFunc(rec.got(), func(s string) bool { return !strings.HasPrefix(s, "rm/"+d.name) })); n != 3 {
				t.Fatalf("the bridge got %d publishes, want 3 (two QoS 2, one QoS 0)", n)
			}
		})
	}
}

// TestConformProtocolErrors: MQTT 5 packets that break a rule with a reason
// code are answered with it (CONNACK for a CONNECT, otherwise DISCONNECT)
// and the connection closed (4.13.1, [MQTT-4.13.1-1]); none reaches a rule.
func TestConformProtocolErrors(t *testing.T) {
	_, rec, addrs := conformBroker(t, "")
	prop := func(id byte, v ...byte) []byte { return append([]byte{id}, v...) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name    string
		connect []byte // a CONNECT with these properties, if set
		publish []byte // else this after a valid CONNECT
		connack byte   // the CONNACK's reason code, for a CONNECT
		reason  byte   // the DISCONNECT's, for a PUBLISH
	}{
		// 3.3.2.3.4: an alias the client never mapped, with no topic.
		{name: "unknown topic alias MQTT-3.3.2-8", publish: rawPublish5("", 1, 1, prop(0x23, 0, 7), "x"), reason: 0x82},
		{name: "topic alias 0 MQTT-3.3.2-8", publish: rawPublish5("pe/t", 1, 1, prop(0x23, 0, 0), "x"), reason: 0x94},
		// 2.2.2.2: a property other than User Property twice.
		{name: "duplicate message expiry 2.2.2.2", publish: rawPublish5("pe/t", 1, 1, cat(prop(0x02, 0, 0, 0, 9), prop(0x02, 0, 0, 0, 9)), "x"), reason: 0x82},
		{name: "duplicate session expiry in CONNECT 2.2.2.2", connect: cat(prop(0x11, 0, 0, 0, 9), prop(0x11, 0, 0, 0, 9)), connack: 0x82},
		// 3.3.2.3.2: Payload Format Indicator is 0 or 1.
		{name: "payload format indicator 2 3.3.2.3.2", publish: rawPublish5("pe/t", 1, 1, prop(0x01, 2), "x"), reason: 0x82},
		{name: "response topic with wildcards MQTT-3.3.2-14", publish: rawPublish5("pe/t", 1, 1, cat([]byte{0x08}, str("pe/+")), "x"), reason: 0x82},
		{name: "subscription identifier from a client MQTT-3.3.4-6", publish: rawPublish5("pe/t", 1, 1, prop(0x0b, 1), "x"), reason: 0x82},
		{name: "topic with a wildcard MQTT-3.3.2-2", publish: rawPublish5("pe/#", 1, 1, nil, "x"), reason: 0x82},
		{name: "property not for PUBLISH 2.2.2.2", publish: rawPublish5("pe/t", 1, 1, prop(0x11, 0, 0, 0, 9), "x"), reason: 0x82},
		// 3.1.2.11.3, 3.1.2.11.4: Receive Maximum and Maximum Packet Size 0.
		{name: "receive maximum 0 3.1.2.11.3", connect: prop(0x21, 0, 0), connack: 0x82},
		{name: "maximum packet size 0 3.1.2.11.4", connect: prop(0x27, 0, 0, 0, 0), connack: 0x82},
		{name: "request problem information 2 3.1.2.11.7", connect: prop(0x17, 2), connack: 0x82},
		{name: "QoS 3 MQTT-3.3.1-4", publish: frame(packets.Publish<<4|3<<1, append(str("pe/t"), 0, 1, 0)), reason: 0x81},
		// [MQTT-1.5.4-1] [MQTT-1.5.4-2] [MQTT-4.7.3-2]: topics are well-formed UTF-8 without U+0000.
		{name: "topic with U+0000 MQTT-4.7.3-2", publish: rawPublish5("pe/\x00", 1, 1, nil, "x"), reason: 0x81},
		{name: "topic not UTF-8 MQTT-1.5.4-1", publish: rawPublish5("pe/\xff", 1, 1, nil, "x"), reason: 0x81},
		{name: "topic with a surrogate MQTT-1.5.4-1", publish: rawPublish5("pe/\xed\xa0\x80", 1, 1, nil, "x"), reason: 0x81},
		{name: "DUP on QoS 0 MQTT-3.3.1-2", publish: frame(packets.Publish<<4|8, append(str("pe/t"), 0)), reason: 0x82},
		// SUBSCRIBE and UNSUBSCRIBE.
		{name: "SUBSCRIBE filter without options 3.8.3", publish: frame(packets.Subscribe<<4|2, append([]byte{0, 1, 0}, str("pe/t")...)), reason: 0x81},
		{name: "SUBSCRIBE without filters MQTT-3.8.3-2", publish: frame(packets.Subscribe<<4|2, []byte{0, 1, 0}), reason: 0x82},
		{name: "SUBSCRIBE options reserved bits MQTT-3.8.3-5", publish: frame(packets.Subscribe<<4|2, append([]byte{0, 1, 0}, append(str("pe/t"), 0xc0)...)), reason: 0x81},
		{name: "Retain Handling 3 3.8.3.1", publish: frame(packets.Subscribe<<4|2, append([]byte{0, 1, 0}, append(str("pe/t"), 0x30)...)), reason: 0x82},
		{name: "SUBSCRIBE reserved header flags MQTT-3.8.1-1", publish: frame(packets.Subscribe<<4, append([]byte{0, 1, 0}, append(str("pe/t"), 0)...)), reason: 0x81},
		{name: "UNSUBSCRIBE without filters MQTT-3.10.3-2", publish: frame(packets.Unsubscribe<<4|2, []byte{0, 1, 0}), reason: 0x82},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawOn(t, dial(t, addrs[0]), 5)
			if tc.connect != nil {
				c.putRaw(rawConnect5("pe", tc.connect))
				if ack := c.expect(packets.Connack); ack.ReasonCode != tc.connack {
					t.Fatalf("CONNACK %#x, want %#x", ack.ReasonCode, tc.connack)
				}
				c.expectEnd()
				return
			}
			c.putRaw(rawConnect5("pe", nil))
			if ack := c.expect(packets.Connack); ack.ReasonCode != 0 {
				t.Fatalf("CONNACK %#x", ack.ReasonCode)
			}
			c.putRaw(tc.publish)
			c.expectDisconnect(int(tc.reason))
		})
	}
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("the bridge got %q, want nothing", got)
	}
}

// TestConformV3NoV5Packets: an MQTT 3.1.1 client is never sent a
// DISCONNECT (3.1.1 has none) nor a CONNACK return code above 5; where no
// return code applies the connection is closed [MQTT-3.2.2-6] (3.1.1).
func TestConformV3NoV5Packets(t *testing.T) {
	b, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	// connect is a 3.1.1 CONNECT of protocol level, flags and client id.
	connect := func(level, flags byte, id string) []byte {
		return frame(packets.Connect<<4, append([]byte{0, 4, 'M', 'Q', 'T', 'T', level, flags, 0, 30}, str(id)...))
	}
	for _, tc := range []struct {
		name    string
		connect []byte
		want    int // CONNACK return code, -1 for a close without CONNACK
	}{
		{"empty client id without clean session MQTT-3.1.3-8", connect(4, 0, ""), 2},
		{"protocol level 3 with name MQTT MQTT-3.1.2-2", connect(3, 2, "v3bad"), 1},
		{"protocol level 6: MQTT 5 CONNACK 0x84 MQTT-3.1.2-2", connect(6, 2, "v3bad"), 0x84},
		{"reserved flag set MQTT-3.1.2-3", connect(4, 3, "v3bad"), -1},
		{"will retain without will flag MQTT-3.1.2-15", connect(4, 0x22, "v3bad"), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawOn(t, dial(t, addr), 4)
			c.putRaw(tc.connect)
			if tc.want >= 0 {
				if ack := c.expect(packets.Connack); ack.ReasonCode != byte(tc.want) || ack.SessionPresent { // [MQTT-3.2.2-4] (3.1.1)
					t.Fatalf("CONNACK %#x present %v, want %#x", ack.ReasonCode, ack.SessionPresent, tc.want)
				}
			}
			c.expectEnd() // [MQTT-3.2.2-5] (3.1.1)
		})
	}
	t.Run("second CONNECT MQTT-3.1.0-2", func(t *testing.T) {
		c, _ := session(t, addr, v3connect("v3twice", true))
		c.put(v3connect("v3twice", true))
		c.expectEnd()
	})
	t.Run("session taken over MQTT-3.1.4-2", func(t *testing.T) {
		old, _ := session(t, addr, v3connect("v3take", true))
		session(t, addr, v3connect("v3take", true))
		old.expectEnd()
	})
	t.Run("server shutting down", func(t *testing.T) {
		c, _ := session(t, addr, v3connect("v3shut", true))
		c5, _ := session(t, addr, v5connect("v5shut", true, 0))
		go func() { _ = b.Close() }()
		c.expectEnd()
		c5.expectDisconnect(0x8b)
	})
}

// publishes returns the PUBLISH packets among pks.
func publishes(pks []packets.Packet) []packets.Packet {
	return slices.DeleteFunc(pks, func(pk packets.Packet) bool { return pk.FixedHeader.Type != packets.Publish })
}

// collect reads until n publishes came, and returns them.
func (c *rawClient) collect(n int) []packets.Packet {
	c.t.Helper()
	var got []packets.Packet
	for len(got) < n {
		if pk := c.next(); pk.FixedHeader.Type == packets.Publish {
			got = append(got, pk)
		}
	}
	return got
}

// expectPublish reads the next packet, which must be a PUBLISH to topic.
func (c *rawClient) expectPublish(topic string) packets.Packet {
	c.t.Helper()
	pk := c.expect(packets.Publish)
	if pk.TopicName != topic {
		c.t.Fatalf("PUBLISH to %q, want %q", pk.TopicName, topic)
	}
	return pk
}

// TestConformConnect: CONNECT and CONNACK, session present, client ids,
// take-over and keep alive.
func TestConformConnect(t *testing.T) {
	_, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	t.Run("MQTT-3.1.0-1 first packet not CONNECT", func(t *testing.T) {
		c := rawOn(t, dial(t, addr), 5)
		c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		c.expectEnd()
	})
	t.Run("MQTT-3.1.0-2 second CONNECT", func(t *testing.T) {
		c, _ := session(t, addr, v5connect("twice", true, 0))
		c.put(v5connect("twice", true, 0))
		c.expectDisconnect(0x82)
	})
	t.Run("MQTT-3.2.0-1 MQTT-3.1.4-5 CONNACK and its properties", func(t *testing.T) {
		_, ack := session(t, addr, v5connect("props", true, 0))
		p := ack.Properties
		// 3.2.2.3.3, 3.2.2.3.6, 3.2.2.3.8: the limits a client must keep to.
		if p.ReceiveMaximum != 2 || p.MaximumPacketSize != 4096 || p.TopicAliasMaximum != 64 {
			t.Fatalf("CONNACK Receive Maximum %d, Maximum Packet Size %d, Topic Alias Maximum %d; want 2, 4096, 64",
				p.ReceiveMaximum, p.MaximumPacketSize, p.TopicAliasMaximum)
		}
	})
	t.Run("MQTT-3.1.3-6 MQTT-3.2.2-16 assigned client id", func(t *testing.T) {
		_, ack := session(t, addr, v5connect("", true, 0))
		if ack.Properties.AssignedClientID == "" {
			t.Fatal("no Assigned Client Identifier for an empty client id")
		}
	})
	t.Run("MQTT-3.1.2-4 MQTT-3.2.2-2 MQTT-3.2.2-3 session present", func(t *testing.T) {
		c, ack := session(t, addr, v5connect("sp", false, 60))
		if ack.SessionPresent {
			t.Fatal("session present for a new session")
		}
		c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
		c.expectEnd()
		if _, ack = session(t, addr, v5connect("sp", false, 60)); !ack.SessionPresent {
			t.Fatal("session not present on resume")
		}
		if _, ack = session(t, addr, v5connect("sp", true, 0)); ack.SessionPresent {
			t.Fatal("session present with Clean Start")
		}
	})
	t.Run("MQTT-3.1.4-3 session taken over", func(t *testing.T) {
		old, _ := session(t, addr, v5connect("take", true, 0))
		session(t, addr, v5connect("take", true, 0))
		old.expectDisconnect(0x8e)
	})
	t.Run("MQTT-3.12.4-1 PINGRESP", func(t *testing.T) {
		c, _ := session(t, addr, v5connect("ping", true, 0))
		if got := c.ping(); len(got) != 0 {
			t.Fatalf("%d packets before PINGRESP", len(got))
		}
	})
	t.Run("MQTT-3.1.2-22 keep alive", func(t *testing.T) {
		pk := v5connect("ka", true, 0)
		pk.Connect.Keepalive = 1
		c, _ := session(t, addr, pk)
		start := time.Now()
		// The server may send DISCONNECT 0x8D first (3.14.2.1).
		if pk, err := c.read(); err == nil && (pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != 0x8d) {
			t.Fatalf("got packet type %d reason %#x, want the connection closed", pk.FixedHeader.Type, pk.ReasonCode)
		} else if err == nil {
			c.expectEnd()
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("closed after %v, before 1.5 times the keep alive", d)
		}
	})
}

// TestConformQoSInbound: QoS 1 and 2 publishes from a client.
func TestConformQoSInbound(t *testing.T) {
	_, rec, addrs := conformBroker(t, "")
	c, _ := session(t, addrs[0], v5connect("qin", true, 0))
	count := func(topic string) int {
		return len(slices.DeleteFunc(rec.got(), func(s string) bool { return s != topic }))
	}

	c.pub(5, "qin/1", 1, false, "a", packets.Properties{})
	if pk := c.expect(packets.Puback); pk.PacketID != 5 || pk.ReasonCode != 0 { // [MQTT-4.3.2-4]
		t.Fatalf("PUBACK %d %#x, want 5 0", pk.PacketID, pk.ReasonCode)
	}

	c.pub(6, "qin/2", 2, false, "a", packets.Properties{})
	if pk := c.expect(packets.Pubrec); pk.PacketID != 6 || pk.ReasonCode != 0 { // [MQTT-4.3.3-8]
		t.Fatalf("PUBREC %d %#x, want 6 0", pk.PacketID, pk.ReasonCode)
	}
	// [MQTT-4.3.3-10]: resent before PUBREL, acknowledged, not delivered again.
	c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Dup: true}, PacketID: 6, TopicName: "qin/2", Payload: []byte("a")})
	if pk := c.expect(packets.Pubrec); pk.PacketID != 6 || pk.ReasonCode != 0 {
		t.Fatalf("PUBREC for the resent publish %d %#x, want 6 0", pk.PacketID, pk.ReasonCode)
	}
	c.ack(packets.Pubrel, 6)
	if pk := c.expect(packets.Pubcomp); pk.PacketID != 6 || pk.ReasonCode != 0 { // [MQTT-4.3.3-11]
		t.Fatalf("PUBCOMP %d %#x, want 6 0", pk.PacketID, pk.ReasonCode)
	}
	if n := count("qin/2"); n != 1 {
		t.Fatalf("the QoS 2 publish reached the bridge %d times, want once [MQTT-4.3.3-10]", n)
	}
	// [MQTT-4.3.3-12]: after PUBCOMP the id starts a new message.
	c.pub(6, "qin/2", 2, false, "b", packets.Properties{})
	if pk := c.expect(packets.Pubrec); pk.ReasonCode != 0 {
		t.Fatalf("PUBREC %#x for a new message under a completed id", pk.ReasonCode)
	}
	c.ack(packets.Pubrel, 6)
	c.expect(packets.Pubcomp)
	if n := count("qin/2"); n != 2 {
		t.Fatalf("the bridge got %d publishes to qin/2, want 2", n)
	}
	// 3.7.2.1: PUBREL for an id not in flight: PUBCOMP 0x92.
	c.ack(packets.Pubrel, 99)
	if pk := c.expect(packets.Pubcomp); pk.PacketID != 99 || pk.ReasonCode != 0x92 {
		t.Fatalf("PUBCOMP %d %#x, want 99 0x92", pk.PacketID, pk.ReasonCode)
	}
}

// TestConformQoSOutbound: QoS 1 and 2 messages to a subscriber, resent
// with DUP on a resumed session, and QoS downgraded to the granted one.
func TestConformQoSOutbound(t *testing.T) {
	_, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	p, _ := session(t, addr, v5connect("qout-pub", true, 0))
	s, _ := session(t, addr, v5connect("qout-sub", false, 60))
	if rc := s.sub(1, packets.Subscription{Filter: "qout/2", Qos: 2}, 0); rc != 2 { // [MQTT-3.9.3-1]
		t.Fatalf("SUBACK %#x, want granted QoS 2", rc)
	}
	if rc := s.sub(2, packets.Subscription{Filter: "qout/1", Qos: 1}, 0); rc != 1 {
		t.Fatalf("SUBACK %#x, want granted QoS 1", rc)
	}
	if rc := s.sub(3, packets.Subscription{Filter: "qout/0", Qos: 0}, 0); rc != 0 {
		t.Fatalf("SUBACK %#x, want granted QoS 0", rc)
	}
	p.pub(1, "qout/1", 1, false, "one", packets.Properties{})
	p.expect(packets.Puback)
	m1 := s.expectPublish("qout/1")
	if m1.FixedHeader.Qos != 1 || m1.PacketID == 0 || m1.FixedHeader.Dup { // [MQTT-2.2.1-3] [MQTT-3.3.1-1]
		t.Fatalf("QoS 1 delivery: qos %d id %d dup %v", m1.FixedHeader.Qos, m1.PacketID, m1.FixedHeader.Dup)
	}
	p.pub(2, "qout/2", 2, false, "two", packets.Properties{})
	p.expect(packets.Pubrec)
	p.ack(packets.Pubrel, 2)
	p.expect(packets.Pubcomp)
	m2 := s.expectPublish("qout/2")
	if m2.FixedHeader.Qos != 2 || m2.PacketID == 0 || m2.PacketID == m1.PacketID { // [MQTT-2.2.1-4]
		t.Fatalf("QoS 2 delivery: qos %d id %d", m2.FixedHeader.Qos, m2.PacketID)
	}
	s.ack(packets.Pubrec, m2.PacketID)
	if pk := s.expect(packets.Pubrel); pk.PacketID != m2.PacketID { // [MQTT-4.3.3-3]
		t.Fatalf("PUBREL %d, want %d", pk.PacketID, m2.PacketID)
	}
	// [MQTT-3.8.4-8]: a QoS 1 message to a QoS 0 subscription is QoS 0.
	p.pub(3, "qout/0", 1, false, "zero", packets.Properties{})
	p.expect(packets.Puback)
	if pk := s.expectPublish("qout/0"); pk.FixedHeader.Qos != 0 || pk.PacketID != 0 { // [MQTT-2.2.1-2]
		t.Fatalf("QoS 0 delivery: qos %d id %d", pk.FixedHeader.Qos, pk.PacketID)
	}

	// The connection drops with the QoS 1 message unacknowledged and the
	// QoS 2 one waiting for PUBCOMP: the resumed session resends the
	// PUBLISH with DUP and the PUBREL [MQTT-4.4.0-1] [MQTT-3.3.1-1].
	s.conn.Close()
	s, ack := session(t, addr, v5connect("qout-sub", false, 60))
	if !ack.SessionPresent {
		t.Fatal("session not present")
	}
	got := map[byte]packets.Packet{}
	for range 2 {
		pk := s.next()
		got[pk.FixedHeader.Type] = pk
	}
	if pk, ok := got[packets.Publish]; !ok || pk.PacketID != m1.PacketID || !pk.FixedHeader.Dup || string(pk.Payload) != "one" {
		t.Fatalf("resent PUBLISH %+v, want id %d with DUP", pk.FixedHeader, m1.PacketID)
	}
	if pk, ok := got[packets.Pubrel]; !ok || pk.PacketID != m2.PacketID {
		t.Fatalf("resent PUBREL %+v, want id %d", pk, m2.PacketID)
	}
	s.ack(packets.Puback, m1.PacketID)
	s.ack(packets.Pubcomp, m2.PacketID)
	if extra := s.ping(); len(extra) != 0 {
		t.Fatalf("%d more packets after the resent ones", len(extra))
	}
}

// TestConformReceiveMaximumOutbound: the broker sends no more unacknowledged
// QoS 1 messages than the client's Receive Maximum [MQTT-3.3.4-9], and
// sends the next one when one is acknowledged.
func TestConformReceiveMaximumOutbound(t *testing.T) {
	_, _, addrs := conformBroker(t, "")
	pk := v5connect("rmo-sub", true, 0)
	pk.Properties.ReceiveMaximum = 2
	s, _ := session(t, addrs[0], pk)
	s.sub(1, packets.Subscription{Filter: "rmo/#", Qos: 1}, 0)
	p, _ := session(t, addrs[0], v5connect("rmo-pub", true, 0))
	for i := uint16(1); i <= 5; i++ {
		p.pub(i, fmt.Sprintf("rmo/%d", i), 1, false, "x", packets.Properties{})
		p.expect(packets.Puback)
	}
	first := publishes(append([]packets.Packet{s.next(), s.next()}, s.ping()...))
	if len(first) != 2 {
		t.Fatalf("%d messages in flight, want the Receive Maximum of 2", len(first))
	}
	s.ack(packets.Puback, first[0].PacketID)
	if got := s.collect(1); got[0].TopicName != "rmo/3" {
		t.Fatalf("after one PUBACK got %s, want rmo/3", got[0].TopicName)
	}
	if got := publishes(s.ping()); len(got) != 0 {
		t.Fatalf("after one PUBACK %d more messages, want rmo/3 alone", len(got))
	}
}

// TestConformTopicAliases: aliases from the client are kept for the
// connection only; aliases to the client respect its Topic Alias Maximum.
func TestConformTopicAliases(t *testing.T) {
	b, rec, addrs := conformBroker(t, "")
	addr := addrs[0]
	watch := v5connect("ta-watch", true, 0)
	watch.Properties.TopicAliasMaximum = 1
	w, _ := session(t, addr, watch)
	w.sub(1, packets.Subscription{Filter: "ta/#", Qos: 0}, 0)
	plain, _ := session(t, addr, v5connect("ta-plain", true, 0))
	plain.sub(1, packets.Subscription{Filter: "ta/#", Qos: 0}, 0)

	c, _ := session(t, addr, v5connect("ta", true, 0))
	c.pub(1, "ta/x", 1, false, "1", packets.Properties{TopicAlias: 3, TopicAliasFlag: true})
	c.expect(packets.Puback)
	c.pub(2, "", 1, false, "2", packets.Properties{TopicAlias: 3, TopicAliasFlag: true}) // [MQTT-3.3.2-12]
	c.expect(packets.Puback)
	if got := rec.got(); !slices.Equal(got, []string{"ta/x", "ta/x"}) {
		t.Fatalf("the bridge got %q, want ta/x twice", got)
	}
	// [MQTT-3.1.2-26]: aliases to the client are at most its maximum (1).
	for _, pk := range []packets.Packet{w.next(), w.next()} {
		if pk.Properties.TopicAlias > 1 || pk.TopicName == "" && pk.Properties.TopicAlias == 0 {
			t.Fatalf("PUBLISH topic %q alias %d to a client with Topic Alias Maximum 1", pk.TopicName, pk.Properties.TopicAlias)
		}
	}
	// [MQTT-3.1.2-27]: none to a client that allows none.
	for _, pk := range []packets.Packet{plain.next(), plain.next()} {
		if pk.Properties.TopicAliasFlag || pk.TopicName != "ta/x" {
			t.Fatalf("PUBLISH topic %q alias %d to a client without Topic Alias Maximum", pk.TopicName, pk.Properties.TopicAlias)
		}
	}
	// [MQTT-3.3.2-7]: a new connection starts without mappings.
	c, _ = session(t, addr, v5connect("ta", true, 0))
	c.pub(1, "", 1, false, "3", packets.Properties{TopicAlias: 3, TopicAliasFlag: true})
	c.expectDisconnect(0x82)
	// [MQTT-3.2.2-17] [MQTT-3.3.2-9]: an alias over the Topic Alias Maximum
	// in CONNACK (max_topic_alias, 64) is refused, and counted.
	c, _ = session(t, addr, v5connect("ta", true, 0))
	c.pub(1, "ta/y", 1, false, "4", packets.Properties{TopicAlias: 65, TopicAliasFlag: true})
	c.expectDisconnect(0x94)
	testkit.WaitFor(t, 5*time.Second, "the refusal counted", func() bool { return b.Refused()[reasonTopicAlias] == 1 })
}

// TestConformRetained: retained messages, Retain Handling and Retain As
// Published.
func TestConformRetained(t *testing.T) {
	_, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	p, _ := session(t, addr, v5connect("ret-pub", true, 0))
	p.pub(1, "ret/a", 1, true, "kept", packets.Properties{})
	p.expect(packets.Puback)
	p.pub(2, "ret/b", 1, true, "gone", packets.Properties{})
	p.expect(packets.Puback)
	p.pub(3, "ret/b", 1, true, "", packets.Properties{}) // [MQTT-3.3.1-6] [MQTT-3.3.1-7]
	p.expect(packets.Puback)
	p.pub(4, "ret/a", 1, false, "not retained", packets.Properties{}) // [MQTT-3.3.1-8]
	p.expect(packets.Puback)

	s, _ := session(t, addr, v5connect("ret-sub", true, 0))
	// [MQTT-3.3.1-9]: Retain Handling 0 sends the retained messages, with
	// RETAIN set [MQTT-3.3.1-5].
	s.sub(1, packets.Subscription{Filter: "ret/#", Qos: 1}, 0)
	got := append(s.collect(1), publishes(s.ping())...)
	if len(got) != 1 || got[0].TopicName != "ret/a" || string(got[0].Payload) != "kept" || !got[0].FixedHeader.Retain {
		t.Fatalf("on subscribe got %d messages, want ret/a=kept retained", len(got))
	}
	s.ack(packets.Puback, got[0].PacketID)
	// [MQTT-3.3.1-10]: Retain Handling 1 sends them for a new subscription only.
	s.sub(2, packets.Subscription{Filter: "ret/#", Qos: 1, RetainHandling: 1}, 0)
	if got := publishes(s.ping()); len(got) != 0 {
		t.Fatalf("Retain Handling 1 on an existing subscription sent %d messages", len(got))
	}
	s.sub(3, packets.Subscription{Filter: "ret/+", Qos: 1, RetainHandling: 1}, 0)
	s.ack(packets.Puback, s.collect(1)[0].PacketID)
	// [MQTT-3.3.1-11]: Retain Handling 2 sends none.
	s2, _ := session(t, addr, v5connect("ret-sub2", true, 0))
	s2.sub(1, packets.Subscription{Filter: "ret/#", Qos: 0, RetainHandling: 2, RetainAsPublished: true}, 0)
	if got := publishes(s2.ping()); len(got) != 0 {
		t.Fatalf("Retain Handling 2 sent %d messages", len(got))
	}
	// [MQTT-3.3.1-12] [MQTT-3.3.1-13]: a live message keeps RETAIN only
	// for a Retain As Published subscription.
	s3, _ := session(t, addr, v5connect("ret-sub3", true, 0))
	s3.sub(1, packets.Subscription{Filter: "ret/c", Qos: 0, RetainHandling: 2}, 0)
	v3, _ := session(t, addr, v3connect("ret-sub-v3", true))
	v3.sub(1, packets.Subscription{Filter: "ret/c", Qos: 0}, 0)
	v3.ping()
	p.pub(5, "ret/c", 1, true, "live", packets.Properties{})
	p.expect(packets.Puback)
	if pk := s2.expectPublish("ret/c"); !pk.FixedHeader.Retain {
		t.Fatal("RETAIN cleared for a Retain As Published subscription [MQTT-3.3.1-13]")
	}
	if pk := s3.expectPublish("ret/c"); pk.FixedHeader.Retain {
		t.Fatal("RETAIN set on a live message [MQTT-3.3.1-12]")
	}
	if pk := v3.expectPublish("ret/c"); pk.FixedHeader.Retain {
		t.Fatal("RETAIN set on a live message to an MQTT 3.1.1 client [MQTT-3.3.1-9] (3.1.1)")
	}
}

// TestConformSharedSubscriptions: $share filters (4.8.2).
func TestConformSharedSubscriptions(t *testing.T) {
	_, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	p, _ := session(t, addr, v5connect("sh-pub", true, 0))
	p.pub(1, "sh/r", 1, true, "retained", packets.Properties{})
	p.expect(packets.Puback)
	a, _ := session(t, addr, v5connect("sh-a", true, 0))
	b, _ := session(t, addr, v5connect("sh-b", true, 0))
	for _, c := range []*rawClient{a, b} {
		if rc := c.sub(1, packets.Subscription{Filter: "$share/g/sh/#", Qos: 0}, 0); rc != 0 {
			t.Fatalf("SUBACK %#x", rc)
		}
	}
	// 4.8.2: no retained messages for a shared subscription.
	for _, c := range []*rawClient{a, b} {
		if got := publishes(c.ping()); len(got) != 0 {
			t.Fatalf("a shared subscription got %d retained messages", len(got))
		}
	}
	for i := uint16(1); i <= 6; i++ {
		p.pub(i, "sh/x", 1, false, "m", packets.Properties{})
		p.expect(packets.Puback)
	}
	// Each message goes to one member of the group [MQTT-4.8.2-3].
	n := 0
	testkit.WaitFor(t, 5*time.Second, "6 messages", func() bool {
		n += len(publishes(a.ping())) + len(publishes(b.ping()))
		return n >= 6
	})
	if n != 6 {
		t.Fatalf("the group got %d messages, want 6", n)
	}
	c, _ := session(t, addr, v5connect("sh-bad", true, 0))
	for _, f := range []string{"$share//sh", "$share/a+b/sh", "$share/g"} { // [MQTT-4.8.2-1] [MQTT-4.8.2-2]
		if rc := c.sub(1, packets.Subscription{Filter: f}, 0); rc < 0x80 {
			t.Errorf("SUBACK %#x for %q, want a failure", rc, f)
		}
	}
	// [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error.
	c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 2,
		Filters: packets.Subscriptions{{Filter: "$share/g/sh/#", NoLocal: true}}})
	c.expectDisconnect(0x82)
}

// TestConformSubscriptionOptions: Subscription Identifiers and No Local.
func TestConformSubscriptionOptions(t *testing.T) {
	_, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	s, _ := session(t, addr, v5connect("so", true, 0))
	s.sub(1, packets.Subscription{Filter: "so/#", Qos: 0}, 7)
	s.sub(2, packets.Subscription{Filter: "so/+", Qos: 0}, 9)
	s.sub(3, packets.Subscription{Filter: "nl/#", Qos: 0, NoLocal: true}, 0)
	p, _ := session(t, addr, v5connect("so-pub", true, 0))
	p.pub(1, "so/x", 1, false, "m", packets.Properties{})
	p.expect(packets.Puback)
	// [MQTT-3.3.4-3] [MQTT-3.3.4-4] [MQTT-3.3.4-5]: the message carries the
	// identifiers of the subscriptions it matched.
	var ids []int
	testkit.WaitFor(t, 5*time.Second, "subscription identifiers", func() bool {
		for _, pk := range publishes(s.ping()) {
			ids = append(ids, pk.Properties.SubscriptionIdentifier...)
		}
		return len(ids) >= 2
	})
	slices.Sort(ids)
	if !slices.Equal(ids, []int{7, 9}) {
		t.Fatalf("subscription identifiers %v, want [7 9]", ids)
	}
	// [MQTT-3.8.3-3]: No Local: not the subscriber's own messages.
	s.pub(4, "nl/own", 1, false, "m", packets.Properties{})
	s.expect(packets.Puback)
	p.pub(2, "nl/other", 1, false, "m", packets.Properties{})
	p.expect(packets.Puback)
	// Messages to a client are written in order: its own would come first.
	if got := s.collect(1); got[0].TopicName != "nl/other" {
		t.Fatalf("No Local subscription got %s, want nl/other", got[0].TopicName)
	}
	// 3.8.2.1.2: Subscription Identifier 0 is a Protocol Error.
	s.putRaw(frame(packets.Subscribe<<4|2, append([]byte{0, 5, 2, 0x0b, 0}, append(str("so/0"), 0)...)))
	s.expectDisconnect(0x82)
}

// TestConformMaximumPacketSize: both ways.
func TestConformMaximumPacketSize(t *testing.T) {
	_, rec, addrs := conformBroker(t, "")
	addr := addrs[0]
	sp := v5connect("mps-sub", true, 0)
	sp.Properties.MaximumPacketSize = 200
	s, _ := session(t, addr, sp)
	s.sub(1, packets.Subscription{Filter: "mps/#", Qos: 1}, 0)
	p, _ := session(t, addr, v5connect("mps-pub", true, 0))
	p.pub(1, "mps/big", 1, false, strings.Repeat("b", 500), packets.Properties{})
	p.expect(packets.Puback)
	p.pub(2, "mps/small", 1, false, "s", packets.Properties{})
	p.expect(packets.Puback)
	// [MQTT-3.1.2-24] [MQTT-3.1.2-25]: too large for the client: discarded,
	// and the messages after it still delivered.
	if pk := s.expectPublish("mps/small"); pk.FixedHeader.Qos != 1 {
		t.Fatalf("qos %d", pk.FixedHeader.Qos)
	}
	// 3.2.2.3.6: a packet over the broker's Maximum Packet Size (4096) is
	// answered with DISCONNECT 0x95, and not taken.
	p.pub(3, "mps/huge", 1, false, strings.Repeat("h", 5000), packets.Properties{})
	p.expectDisconnect(0x95)
	if slices.Contains(rec.got(), "mps/huge") {
		t.Fatal("the bridge got the packet over the maximum")
	}
}

// TestConformWill: will delay, DISCONNECT with and without the will.
func TestConformWill(t *testing.T) {
	_, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	w, _ := session(t, addr, v5connect("will-watch", true, 0))
	w.sub(1, packets.Subscription{Filter: "will/#", Qos: 0}, 0)
	withWill := func(id, payload string, delay uint32) packets.Packet {
		pk := v5connect(id, false, 10)
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, "will/"+id, []byte(payload)
		pk.Connect.WillProperties.WillDelayInterval = delay
		return pk
	}
	// [MQTT-3.14.4-3]: DISCONNECT 0x00 discards the will.
	c, _ := session(t, addr, withWill("normal", "x", 0))
	c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.expectEnd()
	// [MQTT-3.1.3-9]: a connection with the same client id within the
	// delay cancels the will.
	c, _ = session(t, addr, withWill("delayed", "first", 1))
	c.conn.Close()
	second := withWill("delayed", "second", 1)
	second.Connect.WillRetain = true
	wp := &second.Connect.WillProperties
	wp.PayloadFormat, wp.PayloadFormatFlag, wp.ContentType = 1, true, "text/plain"
	wp.ResponseTopic, wp.CorrelationData, wp.MessageExpiryInterval = "will/reply", []byte{7}, 60
	c, _ = session(t, addr, second)
	// [MQTT-3.1.2-8]: DISCONNECT 0x04 publishes it, after the delay.
	start := time.Now()
	c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: 0x04})
	c.expectEnd()
	pk := w.expectPublish("will/delayed")
	if string(pk.Payload) != "second" {
		t.Fatalf("will %q, want the second connection's", pk.Payload)
	}
	// The will is published with its properties [MQTT-3.3.2-4]
	// [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-20], its expiry counted
	// from its publication [MQTT-3.3.2-6].
	if p := pk.Properties; p.PayloadFormat != 1 || !p.PayloadFormatFlag || p.ContentType != "text/plain" ||
		p.ResponseTopic != "will/reply" || !bytes.Equal(p.CorrelationData, []byte{7}) || p.MessageExpiryInterval < 58 || p.MessageExpiryInterval > 60 {
		t.Fatalf("will properties: format %d/%v, content type %q, response topic %q, correlation %v, expiry %d",
			p.PayloadFormat, p.PayloadFormatFlag, p.ContentType, p.ResponseTopic, p.CorrelationData, p.MessageExpiryInterval)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("will sent %v after the disconnect, before its 1 s delay", d)
	}
	if got := publishes(w.ping()); len(got) != 0 {
		t.Fatalf("%d more wills: %q", len(got), got[0].Payload)
	}
	// [MQTT-3.1.2-15] [MQTT-3.3.1-5]: the will was retained, and is kept
	// (its expiry is 60 s).
	w2, _ := session(t, addr, v5connect("will-watch2", true, 0))
	w2.sub(1, packets.Subscription{Filter: "will/delayed", Qos: 0}, 0)
	if pk := w2.expectPublish("will/delayed"); !pk.FixedHeader.Retain || string(pk.Payload) != "second" || pk.Properties.MessageExpiryInterval < 58 {
		t.Fatalf("retained will %q retain %v expiry %d", pk.Payload, pk.FixedHeader.Retain, pk.Properties.MessageExpiryInterval)
	}
	// [MQTT-3.1.2-8]: a connection that ends without DISCONNECT; a will's
	// payload may be empty (3.1.3.4).
	c, _ = session(t, addr, withWill("dropped", "", 0))
	c.conn.Close()
	if pk := w.expectPublish("will/dropped"); len(pk.Payload) != 0 {
		t.Fatalf("will payload %q, want empty", pk.Payload)
	}
}

// TestConformExpiry: message expiry and session expiry.
func TestConformExpiry(t *testing.T) {
	b, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	s, _ := session(t, addr, v5connect("exp-sub", false, 60))
	s.sub(1, packets.Subscription{Filter: "exp/#", Qos: 1}, 0)
	s.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	s.expectEnd()
	p, _ := session(t, addr, v5connect("exp-pub", true, 0))
	p.pub(1, "exp/short", 1, false, "s", packets.Properties{MessageExpiryInterval: 1})
	p.expect(packets.Puback)
	p.pub(2, "exp/long", 1, false, "l", packets.Properties{MessageExpiryInterval: 60})
	p.expect(packets.Puback)
	// A session with expiry 1 that ends now, to be gone when checked below.
	e, _ := session(t, addr, v5connect("exp-session", false, 1))
	e.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	e.expectEnd()
	time.Sleep(2100 * time.Millisecond) // past exp/short's expiry: what is checked is that it expired
	// [MQTT-3.3.2-5]: the expired message is not delivered; [MQTT-3.3.2-6]
	// the other's expiry is less the time it waited.
	s, _ = session(t, addr, v5connect("exp-sub", false, 60))
	got := publishes(s.ping())
	if len(got) != 1 || got[0].TopicName != "exp/long" {
		t.Fatalf("resumed session got %d messages, want exp/long alone", len(got))
	}
	if x := got[0].Properties.MessageExpiryInterval; x == 0 || x >= 60 {
		t.Fatalf("Message Expiry Interval %d, want under 60", x)
	}
	// [MQTT-3.1.2-23]: the session expired.
	testkit.WaitFor(t, 5*time.Second, "session expiry", func() bool { _, ok := b.srv.Clients.Get("exp-session"); return !ok })
	if _, ack := session(t, addr, v5connect("exp-session", false, 1)); ack.SessionPresent {
		t.Fatal("session present after its expiry")
	}
	// 3.14.2.2.2: a Session Expiry Interval on DISCONNECT after 0 on CONNECT.
	z, _ := session(t, addr, v5connect("exp-zero", true, 0))
	z.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
		Properties: packets.Properties{SessionExpiryInterval: 30, SessionExpiryIntervalFlag: true}})
	z.expectDisconnect(0x82)
}

// TestConformServerDisconnect: reason codes of the broker's DISCONNECT not
// covered above.
func TestConformServerDisconnect(t *testing.T) {
	b, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	// 0x81: a PUBLISH whose topic length runs past the packet.
	c, _ := session(t, addr, v5connect("sd-malformed", true, 0))
	c.putRaw(frame(packets.Publish<<4, []byte{0, 50, 'a'}))
	c.expectDisconnect(0x81)
	// 0x8B: the broker shuts down.
	c, _ = session(t, addr, v5connect("sd-shutdown", true, 0))
	go func() { _ = b.Close() }()
	c.expectDisconnect(0x8b)
}

// TestConformRefusedConnect: after a refusing CONNACK the broker processes
// nothing more the client sent [MQTT-3.1.4-6], and the client reads the
// CONNACK before an orderly close [MQTT-3.2.2-7], even with publishes
// pipelined behind the CONNECT.
func TestConformRefusedConnect(t *testing.T) {
	_, rec, addrs := conformBroker(t, "")
	c := rawOn(t, dial(t, addrs[0]), 5)
	pk := v5connect("refused", true, 0)
	pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, levels(200), []byte("w") // over max_topic_levels
	var buf bytes.Buffer
	pk.ProtocolVersion = 5
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	for id := uint16(1); id <= 30; id++ {
		buf.Write(rawPublish5("refused/x", 1, id, nil, strings.Repeat("x", 2000)))
	}
	c.putRaw(buf.Bytes())
	if ack := c.expect(packets.Connack); ack.ReasonCode != 0x90 || ack.SessionPresent { // [MQTT-3.2.2-6]
		t.Fatalf("CONNACK %#x present %v, want 0x90", ack.ReasonCode, ack.SessionPresent)
	}
	c.expectEnd()
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("the bridge got %d publishes sent after a refused CONNECT", len(got))
	}
}

// TestConformSubscribeUnsubscribe: SUBSCRIBE replacing a subscription,
// UNSUBSCRIBE, and wildcards against $ topics.
func TestConformSubscribeUnsubscribe(t *testing.T) {
	_, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	s, _ := session(t, addr, v5connect("su", true, 0))
	p, _ := session(t, addr, v5connect("su-pub", true, 0))
	s.sub(1, packets.Subscription{Filter: "su/#", Qos: 0}, 0)
	// [MQTT-3.8.4-3]: the same filter again replaces the subscription
	// (QoS 1 now): one delivery, at the new QoS.
	s.sub(2, packets.Subscription{Filter: "su/#", Qos: 1}, 0)
	p.pub(1, "su/a", 1, false, "m", packets.Properties{})
	p.expect(packets.Puback)
	got := s.collect(1)
	if got[0].FixedHeader.Qos != 1 {
		t.Fatalf("delivered at QoS %d, want the replacing subscription's 1", got[0].FixedHeader.Qos)
	}
	s.ack(packets.Puback, got[0].PacketID)
	if extra := publishes(s.ping()); len(extra) != 0 {
		t.Fatalf("%d more deliveries for a replaced subscription", len(extra))
	}
	// [MQTT-3.10.4-4] [MQTT-3.10.4-5]: UNSUBACK with the packet id, one
	// code per filter, also for a filter that had no subscription (0x11).
	s.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 7,
		Filters: packets.Subscriptions{{Filter: "su/#"}, {Filter: "none/#"}}})
	if ack := s.expect(packets.Unsuback); ack.PacketID != 7 || !bytes.Equal(ack.ReasonCodes, []byte{0, 0x11}) {
		t.Fatalf("UNSUBACK %d %#x, want 7 [0 0x11]", ack.PacketID, ack.ReasonCodes)
	}
	// [MQTT-3.10.4-2]: no new messages for it.
	s.sub(3, packets.Subscription{Filter: "su2/#", Qos: 0}, 0)
	p.pub(2, "su/b", 1, false, "m", packets.Properties{})
	p.expect(packets.Puback)
	p.pub(3, "su2/b", 1, false, "m", packets.Properties{})
	p.expect(packets.Puback)
	if got := s.collect(1); got[0].TopicName != "su2/b" {
		t.Fatalf("after UNSUBSCRIBE got %s, want su2/b", got[0].TopicName)
	}
	// [MQTT-4.7.2-1]: # and + do not match topics starting with $.
	s.sub(4, packets.Subscription{Filter: "#", Qos: 0}, 0)
	s.sub(5, packets.Subscription{Filter: "+/sys", Qos: 0}, 0)
	if got := publishes(s.ping()); slices.ContainsFunc(got, func(pk packets.Packet) bool { return strings.HasPrefix(pk.TopicName, "$") }) {
		t.Fatal("a wildcard at the first level matched a $ topic")
	}
}

// TestConformPropertiesForwarded: the broker forwards a message's
// properties unaltered: Payload Format Indicator [MQTT-3.3.2-4], Response
// Topic [MQTT-3.3.2-15], Correlation Data [MQTT-3.3.2-16], User Properties
// in order [MQTT-3.3.2-17] [MQTT-3.3.2-18], Content Type [MQTT-3.3.2-20].
func TestConformPropertiesForwarded(t *testing.T) {
	_, _, addrs := conformBroker(t, "")
	s, _ := session(t, addrs[0], v5connect("pf", true, 0))
	s.sub(1, packets.Subscription{Filter: "pf/#", Qos: 1}, 0)
	p, _ := session(t, addrs[0], v5connect("pf-pub", true, 0))
	props := packets.Properties{PayloadFormat: 1, PayloadFormatFlag: true, ResponseTopic: "pf/reply",
		CorrelationData: []byte{1, 2, 3}, ContentType: "text/plain",
		User: []packets.UserProperty{{Key: "b", Val: "1"}, {Key: "a", Val: "2"}, {Key: "b", Val: "3"}}}
	p.pub(1, "pf/x", 1, false, "hello", props)
	p.expect(packets.Puback)
	got := s.collect(1)[0].Properties
	if got.PayloadFormat != 1 || !got.PayloadFormatFlag || got.ResponseTopic != "pf/reply" ||
		!bytes.Equal(got.CorrelationData, []byte{1, 2, 3}) || got.ContentType != "text/plain" || !slices.Equal(got.User, props.User) {
		t.Fatalf("forwarded properties: format %d/%v, response topic %q, correlation %v, content type %q, user %v",
			got.PayloadFormat, got.PayloadFormatFlag, got.ResponseTopic, got.CorrelationData, got.ContentType, got.User)
	}
}

// TestConformV3Session: MQTT 3.1.1 sessions: Clean Session 0 keeps
// subscriptions and queued QoS 1 messages, and session present says so
// [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-2] [MQTT-3.2.2-3]; Clean
// Session 1 discards them [MQTT-3.1.2-6] [MQTT-3.2.2-1] (3.1.1).
func TestConformV3Session(t *testing.T) {
	b, _, addrs := conformBroker(t, "")
	addr := addrs[0]
	s, ack := session(t, addr, v3connect("v3s", false))
	if ack.SessionPresent {
		t.Fatal("session present for a new session")
	}
	s.sub(1, packets.Subscription{Filter: "v3s/#", Qos: 1}, 0)
	s.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	s.expectEnd()
	p, _ := session(t, addr, v3connect("v3s-pub", true))
	p.pub(1, "v3s/x", 1, false, "queued", packets.Properties{})
	if pk := p.expect(packets.Puback); pk.PacketID != 1 { // [MQTT-4.3.2-2] (3.1.1)
		t.Fatalf("PUBACK %d", pk.PacketID)
	}
	// The PUBACK may overtake the delivery to subscribers (it is written
	// once the bridge has the message), and a message routed to a session
	// while it is being taken over is lost (mochi's hand-over), so wait.
	testkit.WaitFor(t, 5*time.Second, "the message queued", func() bool {
		cl, ok := b.srv.Clients.Get("v3s")
		return ok && cl.State.Inflight.Len() == 1
	})
	s, ack = session(t, addr, v3connect("v3s", false))
	if !ack.SessionPresent {
		t.Fatal("session not present on resume")
	}
	if pk := s.collect(1)[0]; pk.TopicName != "v3s/x" || pk.FixedHeader.Qos != 1 {
		t.Fatalf("queued message %s QoS %d", pk.TopicName, pk.FixedHeader.Qos)
	}
	if _, ack = session(t, addr, v3connect("v3s", true)); ack.SessionPresent {
		t.Fatal("session present with Clean Session")
	}
}

// TestConformProblemInformation: with Request Problem Information 0 the
// broker sends no Reason String or User Property on packets other than
// PUBLISH, CONNACK and DISCONNECT [MQTT-3.1.2-29]; a publish to a $ topic
// is refused as an invalid topic name (4.7.2), not left unanswered.
func TestConformProblemInformation(t *testing.T) {
	_, rec, addrs := conformBroker(t, "")
	pk := v5connect("rpi", true, 0)
	pk.Properties.RequestProblemInfo, pk.Properties.RequestProblemInfoFlag = 0, true
	c, _ := session(t, addrs[0], pk)
	c.pub(1, "$SYS/x", 1, false, "m", packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "v"}}})
	ack := c.expect(packets.Puback)
	if ack.ReasonCode != 0x90 {
		t.Fatalf("PUBACK %#x for a $ topic, want 0x90", ack.ReasonCode)
	}
	if ack.Properties.ReasonString != "" || len(ack.Properties.User) != 0 {
		t.Fatalf("PUBACK carries reason string %q, user properties %v", ack.Properties.ReasonString, ack.Properties.User)
	}
	if slices.Contains(rec.got(), "$SYS/x") {
		t.Fatal("the bridge got a publish to a $ topic")
	}
}

// TestConformAuthenticationMethod: the broker supports no enhanced
// authentication, so a CONNECT naming an Authentication Method gets CONNACK
// 0x8C (Bad authentication method) and the connection closes (3.1.2.11.9);
// an AUTH packet from a client that named none is a Protocol Error (4.12).
func TestConformAuthenticationMethod(t *testing.T) {
	b, _, addrs := conformBroker(t, "")
	pk := v5connect("am", true, 0)
	pk.Properties.AuthenticationMethod = "SCRAM-SHA-1"
	c, ack := open(t, addrs[0], pk)
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0x8c {
		t.Fatalf("got packet type %d reason %#x, want CONNACK 0x8c", ack.FixedHeader.Type, ack.ReasonCode)
	}
	c.expectEnd()
	if _, ok := b.srv.Clients.Get("am"); ok {
		t.Fatal("the refused client has a session")
	}
	c, _ = session(t, addrs[0], v5connect("am2", true, 0))
	c.putRaw(frame(packets.Auth<<4, []byte{0x18, 0}))
	c.expectDisconnect(0x82)
}
