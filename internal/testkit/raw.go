package testkit

import (
	"bytes"
	"testing"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// RawConnect encodes a clean-start CONNECT of an MQTT version.
func RawConnect(t testing.TB, buf *bytes.Buffer, version byte, clientID string) {
	t.Helper()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect:         packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: clientID},
	}
	if err := pk.ConnectEncode(buf); err != nil {
		t.Fatal(err)
	}
}

// RawPublish encodes an MQTT 3.1.1 PUBLISH.
func RawPublish(t testing.TB, buf *bytes.Buffer, topic string, qos byte, id uint16, payload string) {
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

// RawPublishV5 encodes an MQTT 5 QoS 1 PUBLISH.
func RawPublishV5(t testing.TB, buf *bytes.Buffer, topic string, id uint16, payload []byte) {
	t.Helper()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: 1},
		ProtocolVersion: 5,
		TopicName:       topic,
		PacketID:        id,
		Payload:         payload,
	}
	if err := pk.PublishEncode(buf); err != nil {
		t.Fatal(err)
	}
}
