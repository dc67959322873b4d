package cluster

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzDecodeMessage: a record of the messages or retained topic comes from
// Kafka, where another writer or a newer node may have put anything; no
// input may panic the decoder or make it allocate more than it holds, and
// what decodes encodes back to itself.
func FuzzDecodeMessage(f *testing.F) {
	format := byte(1)
	for _, m := range []*Message{
		{Topic: "t", Payload: []byte("p"), QoS: 1, Origin: "c", Created: 1_700_000_000},
		{Topic: "a/b", Retain: true, QoS: 2, Origin: "pub", Created: -1, PayloadFormat: &format, ExpiryInterval: 60,
			ContentType: "text/plain", ResponseTopic: "r", CorrelationData: []byte{0, 1},
			UserProps: [][2]string{{"k", "v"}}, SharedGroupsTaken: []string{"$share/g/a/#"}},
	} {
		f.Add(appendMessage(nil, m))
	}
	f.Add([]byte{codecVersion + 1, 0, 0})
	f.Add([]byte{codecVersion, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		if m.QoS > 2 || !routable(m.Topic) {
			t.Fatalf("decoded QoS %d, topic %q", m.QoS, m.Topic)
		}
		if n := len(m.UserProps) + len(m.SharedGroupsTaken); n > len(b) {
			t.Fatalf("%d properties and groups out of %d bytes", n, len(b))
		}
		again, err := decodeMessage(appendMessage(nil, m))
		if err != nil {
			t.Fatalf("re-encoded message unreadable: %v", err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("decoded %+v, re-encoded and decoded %+v", m, again)
		}
		groups := m.SharedGroupsTaken
		m.SharedGroupsTaken = nil
		if n, want := encodedLen(m), len(appendMessage(nil, m)); n != want {
			t.Fatalf("encodedLen = %d, encoded %d bytes", n, want)
		}
		m.SharedGroupsTaken = groups
		if enc := appendMessage(nil, m); !bytes.Equal(enc, appendMessage(nil, again)) {
			t.Fatal("encoding is not deterministic")
		}
	})
}
