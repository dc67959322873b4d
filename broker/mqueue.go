package broker

import (
	"log/slog"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// reasonMqueueLen is the drop reason of queueHook, after its config key.
const reasonMqueueLen = "max_mqueue_len"

// queueHook bounds the messages waiting for a session that cannot take
// them now: offline, where everything stored waits for the client to come
// back, or connected with its send quota used up. Without it a persistent
// session queued max_inflight messages of up to max_packet_size each,
// about 8GB, for a client that never returns. As EMQX's default, the new
// message is dropped (mochi asks OnQueueCheck, a patch, before storing it).
type queueHook struct {
	mqtt.HookBase
	maxLen  int // 0: no limit
	dropped atomic.Int64
	log     *slog.Logger
	lastLog atomic.Int64 // unix ns of the last drop logged
}

func (h *queueHook) ID() string { return "mqkafka-mqueue" }

func (h *queueHook) Provides(b byte) bool { return b == mqtt.OnQueueCheck }

// OnQueueCheck drops a message for a session already holding max_mqueue_len.
func (h *queueHook) OnQueueCheck(cl *mqtt.Client, _ packets.Packet) bool {
	queued := cl.State.Inflight.Waiting()
	if cl.Closed() {
		queued = cl.State.Inflight.Len()
	}
	if h.maxLen == 0 || queued < h.maxLen {
		return true
	}
	h.dropped.Add(1)
	if logAllowed(&h.lastLog) {
		h.log.Warn("message dropped: the session's queue is full (logged at most once a second)",
			"limit", reasonMqueueLen, "queued", queued, "offline", cl.Closed())
	}
	return false
}
