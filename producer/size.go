package producer

import (
	"fmt"
	"math/bits"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
)

// wireSize is what librdkafka measures against message.max.bytes when it
// takes a record (rd_kafka_msg_max_wire_size): key, value, headers as
// serialised, and conf.RecordOverhead. A record over the limit is refused by
// Produce with ErrMsgSizeTooLarge, so it is refused here before it is
// buffered.
func wireSize(r *buffer.Record) int {
	n := conf.RecordOverhead + len(r.Key) + len(r.Value)
	for i := range r.Headers {
		h := &r.Headers[i]
		n += varintLen(len(h.Key)) + len(h.Key) + varintLen(len(h.Value)) + len(h.Value)
	}
	return n
}

// varintLen is the length of n as a zigzag varint, as Kafka encodes header
// lengths.
func varintLen(n int) int { return (bits.Len64(uint64(n)<<1|1) + 6) / 7 }

// recordLimit is the largest record a sink can send and keep.
type recordLimit struct {
	wire  int   // the connector's message.max.bytes, against wireSize
	queue int64 // min(per_partition_limit, max_inflight_bytes), against buffer.Record.Size
}

// check refuses a rendered record that librdkafka would refuse, or that no
// partition queue could hold: length arithmetic only.
func (l recordLimit) check(r *buffer.Record) error {
	if n := wireSize(r); n > l.wire {
		return l.tooLarge(n)
	}
	if n := r.Size(); int64(n) > l.queue {
		return fmt.Errorf("%w: %d bytes, per_partition_limit or max_inflight_bytes is %d", ack.ErrTooLarge, n, l.queue)
	}
	return nil
}

func (l recordLimit) tooLarge(wire int) error {
	return fmt.Errorf("%w: %d bytes with librdkafka's framing, message.max.bytes is %d", ack.ErrTooLarge, wire, l.wire)
}
