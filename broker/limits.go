package broker

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/logx"
)

// Refusal reasons of limitsHook, named after their config keys.
const (
	reasonTopicLevels = "max_topic_levels"
	reasonTopicLength = "max_topic_length"
	reasonClientIDLen = "max_clientid_len"
	reasonTopicAlias  = "max_topic_alias"
	reasonSubs        = "max_subscriptions"
	reasonRetained    = "max_retained_messages"
	reasonSessions    = "max_sessions"
	// reasonReservedID is no config key: the id is the inline client's.
	reasonReservedID = "clientid_reserved"
)

// sysRetained is how many $SYS topics mochi retains itself
// (publishSysTopics); max_retained_messages counts the clients' others.
const sysRetained = 20

// limitsHook refuses client ids, will topics, topic names and topic filters
// over [broker] max_clientid_len, max_topic_levels and max_topic_length. It
// is the first hook, and mochi asks it (OnTopicCheck, a patch) before the
// ACL, the rules or the topic tree see a topic: the tree's cost grows with
// the square of a topic's levels, so one deep topic would otherwise cost
// seconds of CPU.
type limitsHook struct {
	mqtt.HookBase
	srv                            *mqtt.Server
	maxLevels, maxLength, maxIDLen int
	maxSubs, maxRetained           int // 0: no limit
	maxSessions                    int // 0: no limit
	refused                        *refusals
	log                            *slog.Logger
	// drain waits for a client's deferred PUBACKs, which mochi's PUBACK
	// 0x90 for a refused publish must not overtake.
	drain func(*mqtt.Client)

	lastLog atomic.Int64 // unix ns of the last refusal logged
}

func newLimitsHook(srv *mqtt.Server, cfg conf.Broker, refused *refusals, log *slog.Logger) *limitsHook {
	return &limitsHook{srv: srv, maxLevels: cfg.MaxTopicLevels, maxLength: cfg.MaxTopicLength,
		maxIDLen: cfg.MaxClientIDLen, maxSubs: cfg.MaxSubscriptions,
		maxRetained: cfg.MaxRetainedMessages, maxSessions: cfg.MaxSessions, refused: refused, log: log}
}

func (h *limitsHook) ID() string { return "mqkafka-limits" }

func (h *limitsHook) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnTopicCheck || b == mqtt.OnDisconnect ||
		b == mqtt.OnSubscriptionCheck || b == mqtt.OnRetainCheck
}

// OnRetainCheck refuses a retained message for a new topic once
// max_retained_messages topics hold one: they stay after their publisher
// left, up to max_packet_size each (mochi answers 0x97 quota exceeded for
// MQTT 5 QoS 1/2, else closes the connection). Replacing or deleting a
// retained message is always allowed.
func (h *limitsHook) OnRetainCheck(cl *mqtt.Client, pk packets.Packet) bool {
	if !h.retainedFull(pk.TopicName) {
		return true
	}
	if h.drain != nil {
		h.drain(cl)
	}
	h.refuse(cl, reasonRetained, len(pk.Payload))
	return false
}

// retainedFull reports whether a retained message for topic would be one
// past max_retained_messages.
func (h *limitsHook) retainedFull(topic string) bool {
	if h.maxRetained == 0 || h.srv.Topics.Retained.Len() < h.maxRetained+sysRetained {
		return false
	}
	_, ok := h.srv.Topics.Retained.Get(topic)
	return !ok
}

// OnSubscriptionCheck refuses a new filter once the client's session holds
// max_subscriptions: each costs memory for as long as the session lives, so
// one client could otherwise hold gigabytes (mochi answers 0x97 quota
// exceeded; MQTT 3.1.1: 0x80). Renewing a filter it holds is always allowed.
func (h *limitsHook) OnSubscriptionCheck(cl *mqtt.Client, filter string) bool {
	if h.maxSubs == 0 || cl.State.Subscriptions.Len() < h.maxSubs {
		return true
	}
	if _, ok := cl.State.Subscriptions.Get(filter); ok {
		return true
	}
	h.refuse(cl, reasonSubs, len(filter))
	return false
}

// OnDisconnect counts the clients mochi disconnected (DISCONNECT 0x94) for
// a topic alias over max_topic_alias, the Topic Alias Maximum they were told.
func (h *limitsHook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	if errors.Is(err, packets.ErrTopicAliasOverMaximum) {
		h.refuse(cl, reasonTopicAlias, 0)
	}
}

// exceeds returns the limit topic is over, or "". It looks at the length
// and counts '/' bytes: linear and allocation-free whatever the client sent.
// A shared subscription's "$share/<group>/" is not matched against topics,
// so its levels do not count, as in EMQX.
func (h *limitsHook) exceeds(topic string, filter bool) string {
	if len(topic) > h.maxLength {
		return reasonTopicLength
	}
	if filter && len(topic) > len(mqtt.SharePrefix) && strings.EqualFold(topic[:len(mqtt.SharePrefix)+1], mqtt.SharePrefix+"/") {
		if _, f, ok := strings.Cut(topic[len(mqtt.SharePrefix)+1:], "/"); ok {
			topic = f
		}
	}
	if strings.Count(topic, "/") >= h.maxLevels {
		return reasonTopicLevels
	}
	return ""
}

// OnTopicCheck refuses a topic name or filter over the limits; mochi then
// answers it as an invalid topic (MQKAFKA_PATCHES.md).
func (h *limitsHook) OnTopicCheck(cl *mqtt.Client, topic string, filter bool) bool {
	reason := h.exceeds(topic, filter)
	if reason == "" {
		return true
	}
	if !filter && h.drain != nil {
		h.drain(cl)
	}
	h.refuse(cl, reason, len(topic))
	return false
}

// OnConnect refuses a client id over max_clientid_len or the inline
// client's, which a client would take the place of (CONNACK 0x85, MQTT
// 3.1.1: 0x02), a will topic over the topic limits (CONNACK 0x90 for MQTT
// 5; MQTT 3.1.1 has no return code for it, so the connection is closed
// without a CONNACK [MQTT-3.2.2-6]) and a new session past max_sessions
// (CONNACK 0x97 quota exceeded, MQTT 3.1.1: 3 server unavailable), before
// authentication or a cluster claim spends anything on it.
func (h *limitsHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	code, reason, n := packets.CodeSuccess, "", 0
	if len(cl.ID) > h.maxIDLen {
		code, reason, n = packets.ErrClientIdentifierNotValid, reasonClientIDLen, len(cl.ID)
	} else if cl.ID == mqtt.InlineClientId {
		code, reason = packets.ErrClientIdentifierNotValid, reasonReservedID
	} else if pk.Connect.WillFlag {
		if reason = h.exceeds(pk.Connect.WillTopic, false); reason != "" {
			code, n = packets.ErrTopicNameInvalid, len(pk.Connect.WillTopic)
		}
	}
	if reason == "" && h.sessionsFull(cl.ID) {
		code, reason = packets.ErrQuotaExceeded, reasonSessions
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.ErrServerUnavailable
		}
	}
	if reason == "" {
		return nil
	}
	h.refuse(cl, reason, n)
	// SendConnack writes nothing to an MQTT 3.1.1 client for a code 3.1.1 lacks.
	if err := h.srv.SendConnack(cl, code, false, nil); err != nil {
		return errors.Join(code, err)
	}
	return code
}

// sessionsFull reports whether a CONNECT with client id would make a
// session past max_sessions. A session held here, connected or offline,
// is resumed, taken over or replaced, never refused: that adds none.
// CONNECTs of new ids checked at the same moment may each pass before
// any is added, so the count can end above the limit by their number.
func (h *limitsHook) sessionsFull(id string) bool {
	if h.maxSessions == 0 || sessions(h.srv) < h.maxSessions {
		return false
	}
	_, held := h.srv.Clients.Get(id)
	return !held
}

// sessions is how many sessions srv holds, connected or offline: its
// clients but the inline one.
func sessions(srv *mqtt.Server) int { return srv.Clients.Len() - 1 }

// refuse counts a refusal and logs it at most once a second, without the
// id or topic, which can be 64KB.
func (h *limitsHook) refuse(cl *mqtt.Client, reason string, n int) {
	h.refused.add(reason)
	if logx.Allowed(&h.lastLog) {
		h.log.Info("refused: over a limit (logged at most once a second)", "limit", reason,
			"bytes", n, "remote", cl.Net.Remote, "protocol", cl.Properties.ProtocolVersion)
	}
}
