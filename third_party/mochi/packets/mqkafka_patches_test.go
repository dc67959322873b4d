package packets

import (
	"errors"
	"testing"
)

// decodeAny decodes b as the body of a packet with fixed header byte h, as
// the server would read it from a client of protocol version v.
func decodeAny(h, v byte, b []byte) (pk Packet, err error) {
	if err := pk.FixedHeader.Decode(h); err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = len(b)
	pk.ProtocolVersion = v
	switch pk.FixedHeader.Type {
	case Connect:
		if err = pk.ConnectDecode(b); err == nil {
			_ = pk.ConnectValidate()
		}
	case Publish:
		if err = pk.PublishDecode(b); err == nil {
			_ = pk.PublishValidate(10)
		}
	case Puback:
		err = pk.PubackDecode(b)
	case Pubrec:
		err = pk.PubrecDecode(b)
	case Pubrel:
		err = pk.PubrelDecode(b)
	case Pubcomp:
		err = pk.PubcompDecode(b)
	case Subscribe:
		if err = pk.SubscribeDecode(b); err == nil {
			_ = pk.SubscribeValidate()
		}
	case Unsubscribe:
		if err = pk.UnsubscribeDecode(b); err == nil {
			_ = pk.UnsubscribeValidate()
		}
	case Disconnect:
		err = pk.DisconnectDecode(b)
	case Auth:
		if err = pk.AuthDecode(b); err == nil {
			_ = pk.AuthValidate()
		}
	}
	return pk, err
}

// TestMqkafkaSubscribeOptions: an MQTT 5 filter without its options byte
// is malformed (it read past the packet and panicked, ending the process),
// as are options with reserved bits [MQTT-3.8.3-5]; Retain Handling 3 is a
// Protocol Error (3.8.3.1).
func TestMqkafkaSubscribeOptions(t *testing.T) {
	body := []byte{0, 1, 0, 0, 3, 'a', '/', 'b'}
	for _, tc := range []struct {
		options []byte
		want    Code
	}{{nil, ErrMalformedQos}, {[]byte{0xc0}, ErrMalformedFlags}, {[]byte{0x30}, ErrProtocolViolationRetainHandling}} {
		_, err := decodeAny(Subscribe<<4|2, 5, append(body[:len(body):len(body)], tc.options...))
		if !errors.Is(err, tc.want) {
			t.Errorf("options %x: %v, want %v", tc.options, err, tc.want)
		}
	}
}

// TestMqkafkaDuplicateProperty: a property that may appear once, given
// twice, and a value the protocol forbids, are Protocol Errors (0x82);
// User Properties may repeat.
func TestMqkafkaDuplicateProperty(t *testing.T) {
	publish := func(props ...byte) []byte {
		return append(append([]byte{0, 1, 't', 0, 1, byte(len(props))}, props...), 'x')
	}
	for _, tc := range []struct {
		body []byte
		want error
	}{
		{publish(1, 1, 1, 1), ErrProtocolViolationDuplicateProperty},
		{publish(1, 2), ErrProtocolViolationPropertyValue},
		{publish(38, 0, 1, 'k', 0, 1, 'v', 38, 0, 1, 'k', 0, 1, 'v'), nil},
	} {
		_, err := decodeAny(Publish<<4|2, 5, tc.body)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("% x: %v, want %v", tc.body, err, tc.want)
		}
		var code Code
		if tc.want != nil && (!errors.As(err, &code) || code.Code != 0x82) {
			t.Errorf("% x: reason code %#x, want 0x82 (not the wrapping 0x81)", tc.body, code.Code)
		}
	}
}

// FuzzMqkafkaDecode: no bytes a client sends make a decoder panic.
func FuzzMqkafkaDecode(f *testing.F) {
	f.Add(byte(Subscribe<<4|2), byte(5), []byte{0, 1, 0, 0, 3, 'a', '/', 'b'})
	f.Add(byte(Publish<<4|2), byte(5), []byte{0, 1, 't', 0, 1, 2, 1, 1, 'x'})
	f.Add(byte(Connect<<4), byte(5), []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 30, 0, 0, 1, 'c', 0, 0, 1, 't', 0, 1, 'p'})
	f.Add(byte(Unsubscribe<<4|2), byte(4), []byte{0, 1, 0, 1, 'a'})
	f.Add(byte(Disconnect<<4), byte(5), []byte{0x04, 2, 0x11, 0})
	f.Fuzz(func(t *testing.T, h, v byte, b []byte) {
		_, _ = decodeAny(h, 3+v%3, b)
	})
}
