package broker

// The conformance tests walk the normative statements of MQTT 5.0 and
// MQTT 3.1.1 (marked "3.1.1") that the broker is responsible for, with raw
// packets over TCP (TLS and WebSocket too where the transport matters).
// Each test, subtest or table row names the statements it checks.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

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
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), v: pk.ProtocolVersion}
	t.Cleanup(func() { conn.Close() })
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
// sent before its PINGRESP is returned.
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &rawClient{t: t, conn: dial(t, addrs[0]), v: 5}
			c.r = bufio.NewReader(c.conn)
			t.Cleanup(func() { c.conn.Close() })
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
			c := &rawClient{t: t, conn: dial(t, addr), v: 4}
			c.r = bufio.NewReader(c.conn)
			t.Cleanup(func() { c.conn.Close() })
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
