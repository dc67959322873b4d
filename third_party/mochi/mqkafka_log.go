package mqtt

import (
	"log/slog"
	"strconv"

	"github.com/mqkafka/mqkafka/internal/logx"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// logMaxString bounds each client-controlled string the server logs (client
// ids, topics): MQTT allows 64 KB for each, and a log line must stay short.
const logMaxString = 128

// logString is s cut to logMaxString bytes, with the number of bytes left
// out, so that a client cannot make a log line long.
func logString(s string) string {
	if len(s) <= logMaxString {
		return s
	}
	return s[:logMaxString] + "...(+" + strconv.Itoa(len(s)-logMaxString) + " bytes)"
}

// logPacket describes a packet for the log without its payload, properties
// or anything else a client can make long.
func logPacket(pk packets.Packet) slog.Attr {
	attrs := []any{
		"type", packets.PacketNames[pk.FixedHeader.Type],
		"qos", pk.FixedHeader.Qos,
		"id", pk.PacketID,
	}
	if pk.TopicName != "" {
		attrs = append(attrs, "topic", logString(pk.TopicName), "payload_bytes", len(pk.Payload))
	}
	if n := len(pk.Filters); n > 0 {
		attrs = append(attrs, "filters", n, "filter", logString(pk.Filters[0].Filter))
	}
	return slog.Group("packet", attrs...)
}

// logDropped warns of a message dropped for a client whose in-flight store
// is full, at most once a second: InflightDropped counts every one, and a
// slow subscriber would otherwise log as fast as messages arrive.
func (s *Server) logDropped(msg string, args ...any) {
	if logx.Allowed(&s.droppedLogged) {
		s.Log.Warn(msg, append(args, "note", "counted as dropped (max_inflight); logged at most once a second")...)
	}
}
