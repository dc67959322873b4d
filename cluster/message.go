package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// Message is a publish as it crosses nodes: what MQTT delivers of it.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Origin is the publisher's client id on the node it came in.
	Origin string
	// Created is when it came in, in Unix seconds.
	Created int64
	// Properties of an MQTT 5 publish that subscribers receive.
	PayloadFormat     *byte
	ExpiryInterval    uint32
	ContentType       string
	ResponseTopic     string
	CorrelationData   []byte
	UserProps         [][2]string
	SharedGroupsTaken []string // shared filters ($share/g/f) the receiving node delivers to
}

// codecVersion is the first byte of every encoded message; a node refuses
// what a newer node encoded differently.
const codecVersion = 1

const (
	flagRetain        = 1 << 2
	flagPayloadFormat = 1 << 3
)

var errShort = errors.New("cluster: message cut short")

// appendMessage encodes m after b, in a form meant for mqkafka only: no
// field names, lengths as varints, the payload last and unframed.
func appendMessage(b []byte, m *Message) []byte {
	flags := m.QoS & 3
	if m.Retain {
		flags |= flagRetain
	}
	var format byte
	if m.PayloadFormat != nil {
		flags |= flagPayloadFormat
		format = *m.PayloadFormat
	}
	b = append(b, codecVersion, flags, format)
	b = binary.AppendVarint(b, m.Created)
	b = binary.AppendUvarint(b, uint64(m.ExpiryInterval))
	for _, s := range []string{m.Origin, m.Topic, m.ContentType, m.ResponseTopic, string(m.CorrelationData)} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(m.UserProps)))
	for _, kv := range m.UserProps {
		b = appendString(appendString(b, kv[0]), kv[1])
	}
	b = binary.AppendUvarint(b, uint64(len(m.SharedGroupsTaken)))
	for _, g := range m.SharedGroupsTaken {
		b = appendString(b, g)
	}
	return append(b, m.Payload...)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// encodedLen is len(appendMessage(nil, m)) with no SharedGroupsTaken,
// counted without encoding.
func encodedLen(m *Message) int {
	n := 3 + varintLen(m.Created) + uvarintLen(uint64(m.ExpiryInterval)) + field(len(m.Origin)) + field(len(m.Topic)) +
		field(len(m.ContentType)) + field(len(m.ResponseTopic)) + field(len(m.CorrelationData)) +
		uvarintLen(uint64(len(m.UserProps))) + uvarintLen(0)
	for _, kv := range m.UserProps {
		n += field(len(kv[0])) + field(len(kv[1]))
	}
	return n + len(m.Payload)
}

// field is the encoded length of a string of n bytes.
func field(n int) int { return uvarintLen(uint64(n)) + n }

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func varintLen(v int64) int { return uvarintLen(uint64(v<<1) ^ uint64(v>>63)) }

// decodeMessage is appendMessage's inverse; the message keeps no
// reference to b but through Payload and CorrelationData.
func decodeMessage(b []byte) (*Message, error) {
	d := decoder{b: b}
	if len(b) < 3 {
		return nil, errShort
	}
	if b[0] != codecVersion {
		return nil, fmt.Errorf("cluster: message encoded in version %d, this node reads %d", b[0], codecVersion)
	}
	flags, format := b[1], b[2]
	if flags&3 == 3 || flags&^(3|flagRetain|flagPayloadFormat) != 0 {
		return nil, fmt.Errorf("cluster: message flags %#x, this node reads QoS 0-2, retain and payload format", flags)
	}
	d.b = b[3:]
	m := &Message{QoS: flags & 3, Retain: flags&flagRetain != 0}
	if flags&flagPayloadFormat != 0 {
		m.PayloadFormat = &format
	}
	m.Created = d.varint()
	m.ExpiryInterval = uint32(d.uvarint())
	m.Origin, m.Topic, m.ContentType, m.ResponseTopic = d.string(), d.string(), d.string(), d.string()
	if c := d.bytes(); len(c) > 0 {
		m.CorrelationData = c
	}
	if n := d.count(); n > 0 {
		m.UserProps = make([][2]string, n)
		for i := range m.UserProps {
			m.UserProps[i] = [2]string{d.string(), d.string()}
		}
	}
	if n := d.count(); n > 0 {
		m.SharedGroupsTaken = make([]string, n)
		for i := range m.SharedGroupsTaken {
			m.SharedGroupsTaken[i] = d.string()
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if !routable(m.Topic) {
		return nil, fmt.Errorf("cluster: message for topic %q, which no node routes", m.Topic)
	}
	m.Payload = d.b
	return m, nil
}

// routable reports whether topic is a topic name a node shares with the
// others: none starting with '$' ($SYS and the like are each node's own).
func routable(topic string) bool {
	return topic != "" && topic[0] != '$' && !strings.ContainsAny(topic, "+#\x00")
}

// decoder reads what appendMessage wrote; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count is a length that must fit in what is left, so that a corrupt one
// allocates nothing large.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errShort
	}
	d.b = nil
}
