package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The load generator speaks MQTT 5 itself instead of through paho: on two
// cores the client's CPU is taken from the broker under test, and paho
// allocates several objects and makes one write syscall per publish. Here a
// connection's publishes are encoded into one bufio.Writer and flushed when
// the in-flight window is full or the sender has nothing due, so hundreds of
// publishes share a syscall and nothing is allocated per message.

// MQTT control packet types.
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktSubscribe  = 8
	pktSuback     = 9
	pktPingresp   = 13
	pktDisconnect = 14
)

// keepAlive is long because the bench sends no PINGREQ; mochi warns about
// (and logs per connection) keep-alives under its recommended minimum.
const keepAlive = 600

// mqttConn is one MQTT 5 connection.
type mqttConn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// receiveMax is the server's Receive Maximum: how many QoS 1 publishes
	// may be unacknowledged at once.
	receiveMax int
	body       []byte // reused packet body
}

// dialMQTT connects and completes the CONNECT/CONNACK handshake. local, when
// set, is the source address; recvMax is the client's own Receive Maximum
// (0: the protocol default).
func dialMQTT(ctx context.Context, addr string, local *net.TCPAddr, clientID string, recvMax uint16) (*mqttConn, error) {
	c, _, err := dialSession(ctx, addr, local, clientID, recvMax, 0)
	return c, err
}

// dialSession is dialMQTT with a Session Expiry Interval: above 0, the
// session is resumed (clean start 0) and present tells whether it was.
func dialSession(ctx context.Context, addr string, local *net.TCPAddr, clientID string, recvMax uint16, expiry uint32) (c *mqttConn, present bool, err error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != nil {
		d.LocalAddr = local
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, fmt.Errorf("mqtt dial %s: %w", addr, err)
	}
	c = &mqttConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), bw: bufio.NewWriterSize(nc, 64<<10), receiveMax: 65535}
	if present, err = c.handshake(ctx, clientID, recvMax, expiry); err != nil {
		nc.Close()
		return nil, false, err
	}
	return c, present, nil
}

func (c *mqttConn) handshake(ctx context.Context, clientID string, recvMax uint16, expiry uint32) (present bool, err error) {
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.nc.SetDeadline(deadline)
	defer func() { _ = c.nc.SetDeadline(time.Time{}) }()

	var props []byte
	if recvMax > 0 {
		props = append(props, 0x21, byte(recvMax>>8), byte(recvMax))
	}
	flags := byte(0x02) // clean start
	if expiry > 0 {
		flags = 0
		props = append(props, 0x11, byte(expiry>>24), byte(expiry>>16), byte(expiry>>8), byte(expiry))
	}
	var vh []byte
	vh = append(vh, 0, 4, 'M', 'Q', 'T', 'T', 5, flags, keepAlive>>8, keepAlive&0xff)
	vh = appendVBI(vh, len(props))
	vh = append(vh, props...)
	vh = appendString(vh, clientID)
	pkt := append([]byte{pktConnect << 4}, appendVBI(nil, len(vh))...)
	pkt = append(pkt, vh...)
	if _, err := c.bw.Write(pkt); err != nil {
		return false, fmt.Errorf("mqtt connect: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return false, fmt.Errorf("mqtt connect: %w", err)
	}
	typ, _, body, err := c.readPacket()
	if err != nil {
		return false, fmt.Errorf("mqtt connack: %w", err)
	}
	if typ != pktConnack || len(body) < 2 {
		return false, fmt.Errorf("mqtt connack: unexpected packet type %d", typ)
	}
	if body[1] != 0 {
		return false, fmt.Errorf("mqtt connect refused: reason 0x%02x", body[1])
	}
	if rm, ok := findUint16Prop(body[2:], 0x21); ok && rm > 0 {
		c.receiveMax = int(rm)
	}
	return body[0]&1 == 1, nil
}

// subscribe subscribes to one filter and waits for the SUBACK.
func (c *mqttConn) subscribe(filter string, qos byte) error {
	var vh []byte
	vh = append(vh, 0, 1, 0) // packet id 1, no properties
	vh = appendString(vh, filter)
	vh = append(vh, qos)
	pkt := append([]byte{pktSubscribe<<4 | 0x02}, appendVBI(nil, len(vh))...)
	pkt = append(pkt, vh...)
	if _, err := c.bw.Write(pkt); err != nil {
		return fmt.Errorf("mqtt subscribe: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("mqtt subscribe: %w", err)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	for {
		typ, _, body, err := c.readPacket()
		if err != nil {
			return fmt.Errorf("mqtt suback: %w", err)
		}
		if typ != pktSuback {
			continue
		}
		// packet id, properties, then one reason code per filter.
		if len(body) < 3 {
			return errors.New("mqtt suback: short packet")
		}
		n, l, ok := readVBI(body[2:])
		if !ok || 2+l+n >= len(body) {
			return errors.New("mqtt suback: malformed")
		}
		if rc := body[2+l+n]; rc >= 0x80 {
			return fmt.Errorf("mqtt subscribe %q refused: reason 0x%02x", filter, rc)
		}
		return nil
	}
}

// writePublish encodes one PUBLISH into the write buffer; flush sends it.
func (c *mqttConn) writePublish(topic string, qos byte, pid uint16, payload []byte) error {
	var hdr [16]byte
	n := 2 + len(topic) + 1 + len(payload) // topic, property length 0, payload
	if qos > 0 {
		n += 2
	}
	h := append(hdr[:0], pktPublish<<4|qos<<1)
	h = appendVBI(h, n)
	h = append(h, byte(len(topic)>>8), byte(len(topic)))
	if _, err := c.bw.Write(h); err != nil {
		return err
	}
	if _, err := c.bw.WriteString(topic); err != nil {
		return err
	}
	h = hdr[:0]
	if qos > 0 {
		h = append(h, byte(pid>>8), byte(pid))
	}
	h = append(h, 0)
	if _, err := c.bw.Write(h); err != nil {
		return err
	}
	_, err := c.bw.Write(payload)
	return err
}

// writePuback encodes a PUBACK with reason success.
func (c *mqttConn) writePuback(pid uint16) error {
	_, err := c.bw.Write([]byte{pktPuback << 4, 2, byte(pid >> 8), byte(pid)})
	return err
}

func (c *mqttConn) flush() error { return c.bw.Flush() }

// disconnect sends DISCONNECT (normal) and closes the socket.
func (c *mqttConn) disconnect() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.bw.Write([]byte{pktDisconnect << 4, 0})
	_ = c.bw.Flush()
	_ = c.nc.Close()
}

// readPacket reads one packet; body is valid until the next call.
func (c *mqttConn) readPacket() (typ, flags byte, body []byte, err error) {
	b0, err := c.br.ReadByte()
	if err != nil {
		return 0, 0, nil, err
	}
	var n, shift int
	for i := 0; ; i++ {
		b, err := c.br.ReadByte()
		if err != nil {
			return 0, 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
		if i == 3 {
			return 0, 0, nil, errors.New("mqtt: malformed remaining length")
		}
	}
	if cap(c.body) < n {
		c.body = make([]byte, n, max(n, 1024))
	}
	body = c.body[:n]
	if _, err := io.ReadFull(c.br, body); err != nil {
		return 0, 0, nil, err
	}
	return b0 >> 4, b0 & 0x0f, body, nil
}

// parsePuback returns a PUBACK's packet id and reason code.
func parsePuback(body []byte) (uint16, byte, bool) {
	if len(body) < 2 {
		return 0, 0, false
	}
	pid := binary.BigEndian.Uint16(body)
	if len(body) == 2 {
		return pid, 0, true
	}
	return pid, body[2], true
}

// parsePublish returns a PUBLISH's packet id (0 for QoS 0) and payload.
func parsePublish(flags byte, body []byte) (pid uint16, qos byte, payload []byte, ok bool) {
	qos = (flags >> 1) & 3
	if len(body) < 2 {
		return 0, 0, nil, false
	}
	i := 2 + int(binary.BigEndian.Uint16(body))
	if qos > 0 {
		if len(body) < i+2 {
			return 0, 0, nil, false
		}
		pid = binary.BigEndian.Uint16(body[i:])
		i += 2
	}
	if i >= len(body) {
		return 0, 0, nil, false
	}
	pl, l, okv := readVBI(body[i:])
	if !okv || i+l+pl > len(body) {
		return 0, 0, nil, false
	}
	return pid, qos, body[i+l+pl:], true
}

func appendVBI(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// readVBI decodes a variable byte integer: its value and its length.
func readVBI(b []byte) (v, n int, ok bool) {
	shift := 0
	for i := 0; i < len(b) && i < 4; i++ {
		v |= int(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return v, i + 1, true
		}
		shift += 7
	}
	return 0, 0, false
}

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// findUint16Prop finds a two-byte property in an MQTT 5 property list
// (prefixed by its length), skipping the others by their type.
func findUint16Prop(b []byte, id byte) (uint16, bool) {
	n, l, ok := readVBI(b)
	if !ok || l+n > len(b) {
		return 0, false
	}
	p := b[l : l+n]
	for len(p) > 0 {
		pid := p[0]
		p = p[1:]
		var size int
		switch pid {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2a:
			size = 1
		case 0x13, 0x21, 0x22, 0x23:
			if len(p) < 2 {
				return 0, false
			}
			if pid == id {
				return binary.BigEndian.Uint16(p), true
			}
			size = 2
		case 0x02, 0x11, 0x18, 0x27:
			size = 4
		case 0x0b:
			_, vl, ok := readVBI(p)
			if !ok {
				return 0, false
			}
			size = vl
		case 0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1a, 0x1c, 0x1f:
			if len(p) < 2 {
				return 0, false
			}
			size = 2 + int(binary.BigEndian.Uint16(p))
		case 0x26:
			if len(p) < 2 {
				return 0, false
			}
			k := 2 + int(binary.BigEndian.Uint16(p))
			if len(p) < k+2 {
				return 0, false
			}
			size = k + 2 + int(binary.BigEndian.Uint16(p[k:]))
		default:
			return 0, false
		}
		if size > len(p) {
			return 0, false
		}
		p = p[size:]
	}
	return 0, false
}
