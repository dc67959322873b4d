package broker

import (
	"log/slog"
	"sync/atomic"

	"github.com/mqkafka/mqkafka/internal/logx"
	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// Drop reasons of queueHook, after their config keys.
const (
	reasonMqueueLen   = "max_mqueue_len"
	reasonMqueueBytes = "max_mqueue_bytes"
)

// queueHook bounds the messages waiting for a session that cannot take
// them now: offline, where everything stored waits for the client to come
// back, or connected with its send quota used up. Without it a persistent
// session queued max_inflight messages of up to max_packet_size each,
// about 8GB, for a client that never returns; max_mqueue_len messages of
// max_packet_size are still 1GB, so max_mqueue_bytes bounds their payload
// bytes too. As EMQX's default, the new message is dropped (mochi asks
// OnQueueCheck, a patch, before storing it).
type queueHook struct {
	mqtt.HookBase
	maxLen       int   // 0: no limit
	maxBytes     int64 // 0: no limit
	dropped      atomic.Int64
	droppedBytes atomic.Int64 // messages dropped for max_mqueue_bytes
	log          *slog.Logger
	lastLog      atomic.Int64 // unix ns of the last drop logged
}

func (h *queueHook) ID() string { return "mqkafka-mqueue" }

func (h *queueHook) Provides(b byte) bool { return b == mqtt.OnQueueCheck }

// OnQueueCheck drops a message for a session that cannot take it now and
// already holds max_mqueue_len messages, or would hold more than
// max_mqueue_bytes with it.
func (h *queueHook) OnQueueCheck(cl *mqtt.Client, pk packets.Packet) bool {
	offline := cl.Closed()
	queued := cl.State.Inflight.Waiting()
	if offline {
		queued = cl.State.Inflight.Len()
	}
	reason := ""
	switch {
	case h.maxLen > 0 && queued >= h.maxLen:
		reason = reasonMqueueLen
		h.dropped.Add(1)
	case h.maxBytes > 0 && (offline || queued > 0) && cl.State.Inflight.Bytes()+int64(len(pk.Payload)) > h.maxBytes:
		reason = reasonMqueueBytes
		h.droppedBytes.Add(1)
	default:
		return true
	}
	if logx.Allowed(&h.lastLog) {
		h.log.Warn("message dropped: the session's queue is full (logged at most once a second)",
			"limit", reason, "queued", queued, "bytes", cl.State.Inflight.Bytes(), "offline", offline)
	}
	return false
}
