// Package broker embeds the MQTT broker (mochi-mqtt) and hands every publish
// that a rule reads to the rule engine before the publisher is acknowledged.
package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/logx"
	"github.com/mqkafka/mqkafka/rule"
)

// Publisher takes the publishes that rules read.
type Publisher interface {
	Matches(topic string) bool
	// Publish hands ev to the rules and returns as w says.
	Publish(ctx context.Context, w ack.Wait, ev *rule.Event) error
}

// Broker is the running MQTT broker.
type Broker struct {
	srv       *mqtt.Server
	listeners []*listener
	log       *slog.Logger
	access    *accessHook
	store     *storeHook // nil without persistence
	acks      *acks
	// refused counts what clients were refused, by reason (Refused).
	refused *refusals
	limits  *limitsHook
	queue   *queueHook
	bridge  *bridgeHook
	// cluster is nil unless JoinCluster made this node one of a cluster.
	cluster *clusterHook
	// sessions is nil unless ShareSessions keeps sessions in the cluster.
	sessions *sessionHook
	// pending holds the connections that have not sent CONNECT yet.
	pending      *pending
	acceptErrors atomic.Int64

	closeOnce sync.Once
}

// New builds a broker and binds its listeners; Start restores the persisted
// sessions and serves.
func New(cfg conf.Broker, node string, pub Publisher, log *slog.Logger) (b *Broker, err error) {
	srv := mqtt.New(&mqtt.Options{
		Capabilities: capabilities(cfg),
		Logger:       log.With("component", "mqtt"),
		InlineClient: true,
	})
	defer func() {
		if err != nil {
			_ = srv.Close()
		}
	}()
	b = &Broker{srv: srv, log: log, refused: new(refusals)}
	b.pending = newPending(cfg.IdleTimeout, b.refused.counter("idle_timeout"))
	// First, so that a CONNECT is noted before any hook refuses it.
	if err := srv.AddHook(b.pending, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	// Before the others, so that nothing spends work on what it refuses.
	b.limits = newLimitsHook(srv, cfg, b.refused, log.With("component", "limits"))
	if err := srv.AddHook(b.limits, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.queue = &queueHook{maxLen: cfg.MaxMqueueLen, maxBytes: int64(cfg.MaxMqueueBytes), log: log.With("component", "limits")}
	if err := srv.AddHook(b.queue, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if b.access, err = newAccessHook(srv, cfg, log.With("component", "auth")); err != nil {
		return nil, err
	}
	b.access.refused = b.refused
	rates := &clientRates{messages: float64(cfg.MessagesRate), bytes: float64(cfg.BytesRate),
		messagesDelayed: b.refused.counter(reasonMessagesRate), bytesDelayed: b.refused.counter(reasonBytesRate),
		log: log.With("component", "limits")}
	if err := srv.AddHook(rates, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if b.access.auth.refusesAll() {
		log.Warn("every MQTT client will be refused: [broker.auth] allow_anonymous is false and no users are configured")
	}
	if err := srv.AddHook(b.access, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if cfg.Persistence {
		st, err := openStore(StoreDir(cfg.DataDir), log.With("component", "session-store"))
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		st.srv = srv
		if err := srv.AddHook(st, nil); err != nil {
			_ = st.Stop()
			return nil, fmt.Errorf("broker: %w", err)
		}
		b.store = st
	}
	h := &bridgeHook{pub: pub, node: node, log: log.With("component", "bridge")}
	h.acks = newAcks(cfg.ReceiveMaximum, h.log)
	b.acks = h.acks
	b.access.drain = h.acks.drain
	b.limits.drain = h.acks.drain
	if _, err := rand.Read(h.idPrefix[:]); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.bridge = h
	for i, lc := range cfg.Listeners {
		id := fmt.Sprintf("%s-%d", lc.Type, i)
		var cr *connRate
		if cfg.MaxConnRate > 0 {
			cr = &connRate{bucket: newBucket(float64(cfg.MaxConnRate)), delayed: b.refused.counter(reasonConnRate),
				log: log.With("listener", id)}
		}
		l, err := newListener(id, lc, b.pending, cr, rates, &b.acceptErrors, log)
		if err != nil {
			return nil, fmt.Errorf("broker: listener %s: %w", lc.Address, err)
		}
		if err := srv.AddListener(l); err != nil {
			return nil, fmt.Errorf("broker: listener %s: %w", lc.Address, err)
		}
		b.listeners = append(b.listeners, l)
	}
	return b, nil
}

// capabilities are mochi's limits as configured; every one is set, so that
// none is mochi's silent default.
func capabilities(cfg conf.Broker) *mqtt.Capabilities {
	caps := mqtt.NewDefaultServerCapabilities()
	// mochi copies a publisher's MQTT 5 properties into the PUBACK otherwise.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	caps.MaximumInflight = uint16(cfg.MaxInflight)
	caps.MaximumClientWritesPending = int32(cfg.MaxClientWritesPending)
	caps.ReceiveMaximum = uint16(cfg.ReceiveMaximum)
	caps.MaximumClients = math.MaxInt64
	if cfg.MaxClients > 0 {
		caps.MaximumClients = int64(cfg.MaxClients)
	}
	caps.RetainAvailable = 0
	if cfg.RetainAvailable {
		caps.RetainAvailable = 1
	}
	caps.TopicAliasMaximum = uint16(cfg.MaxTopicAlias)
	caps.MaximumMessageExpiryInterval = int64(cfg.MaxMessageExpiry / time.Second)
	caps.MaximumSessionExpiryInterval = math.MaxUint32
	if cfg.MaxSessionExpiry > 0 {
		caps.MaximumSessionExpiryInterval = uint32(cfg.MaxSessionExpiry / time.Second)
	}
	return caps
}

// Start restores the persisted sessions, subscriptions, in-flight and
// retained messages, then serves the listeners: nothing is accepted before
// the state is back.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if b.store != nil {
		in := b.srv.Info.Clone()
		b.log.Info("MQTT state restored", "store", b.store.db.Path(), "sessions", sessions(b.srv),
			"subscriptions", in.Subscriptions, "inflight", in.Inflight, "retained", in.Retained)
	}
	return nil
}

// Addrs returns the listeners' bound addresses.
func (b *Broker) Addrs() []string {
	var out []string
	for _, l := range b.listeners {
		out = append(out, l.Address())
	}
	return out
}

// Refused counts, by reason, the connections, packets and sessions the
// broker refused because a client exceeded a limit.
func (b *Broker) Refused() map[string]int64 { return b.refused.snapshot() }

// Healthy reports whether every listener still accepts connections, and
// why not.
func (b *Broker) Healthy() (bool, string) {
	for _, l := range b.listeners {
		if ok, why := l.health(); !ok {
			return false, why
		}
	}
	return true, ""
}

// Sessions is how many sessions this node holds, connected or offline:
// what max_sessions bounds.
func (b *Broker) Sessions() int { return sessions(b.srv) }

// Pending is how many connections have not sent CONNECT yet.
func (b *Broker) Pending() int { return b.pending.len() }

// AcceptErrors counts the accepts that failed (and were retried), e.g.
// for want of file descriptors.
func (b *Broker) AcceptErrors() int64 { return b.acceptErrors.Load() }

// Close stops accepting, disconnects every client, commits the session
// store and stops the broker. Only the first call does anything: mochi
// panics on a second.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.pending.close()
		err = b.srv.Close()
		b.acks.wait()
	})
	return err
}

// bridgeHook hands publishes to the rules inside OnPublish, which mochi runs
// before it writes the PUBACK/PUBREC: a QoS 1/2 publish is acknowledged only
// once every sink that reads it has it in its buffer. QoS 1 PUBACKs are
// written by acks, so the connection's next publish is read meanwhile.
type bridgeHook struct {
	mqtt.HookBase
	pub      Publisher
	acks     *acks
	node     string
	log      *slog.Logger
	idPrefix [8]byte
	idSeq    atomic.Uint64
	// cluster delivers what other nodes send: their rules ran there.
	cluster *mqtt.Client
	// route is nil unless the broker joined a cluster.
	route *clusterHook

	lastRefusal atomic.Int64 // unix ns of the last refusal logged
}

func (h *bridgeHook) ID() string { return "mqkafka-bridge" }

func (h *bridgeHook) Provides(b byte) bool { return b == mqtt.OnPublish || b == mqtt.OnDisconnect }

func (h *bridgeHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.acks.forget(cl) }

func (h *bridgeHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	deferrable := pk.FixedHeader.Qos == 1 && !cl.Net.Inline
	if h.route != nil && cl != h.cluster {
		// Before the sinks, which would keep what the client is refused.
		if err := h.route.tooLarge(&pk); err != nil {
			h.acks.drain(cl)
			return h.refuse(cl, pk, err)
		}
	}
	if cl == h.cluster || !h.pub.Matches(pk.TopicName) {
		if deferrable && h.acks.behind(cl) {
			// Answering now would overtake the PUBACKs still pending.
			c := h.acks.conn(cl)
			c.settle(c.reserve(pk.PacketID))
			return pk, mqtt.ErrPubackDeferred
		}
		return pk, nil
	}
	now := time.Now().UnixMilli()
	ev := &rule.Event{
		ClientID:          cl.ID,
		Username:          string(cl.Properties.Username),
		Topic:             pk.TopicName,
		Payload:           pk.Payload,
		QoS:               pk.FixedHeader.Qos,
		Retain:            pk.FixedHeader.Retain,
		Dup:               pk.FixedHeader.Dup,
		PeerHost:          peerHost(cl.Net.Remote),
		Timestamp:         now,
		PublishReceivedAt: now,
		Node:              h.node,
	}
	copy(ev.ID[:8], h.idPrefix[:])
	binary.BigEndian.PutUint64(ev.ID[8:], h.idSeq.Add(1))
	if cl.Properties.ProtocolVersion == 5 {
		fillProps(ev, &pk.Properties)
	}
	var err error
	switch {
	case deferrable:
		c := h.acks.conn(cl)
		s := c.reserve(pk.PacketID)
		if err = h.pub.Publish(context.Background(), ack.Deferred(s.t), ev); err != nil {
			c.refuse(s)
			break
		}
		c.settle(s)
		return pk, mqtt.ErrPubackDeferred
	case pk.FixedHeader.Qos == 0:
		// Nobody is told, so nothing waits for the disk.
		err = h.pub.Publish(context.Background(), ack.NoWait(), ev)
	default:
		err = h.pub.Publish(context.Background(), ack.InCall(), ev)
	}
	if err == nil {
		return pk, nil
	}
	if logx.Allowed(&h.lastRefusal) {
		h.log.Warn("publish refused: a sink did not take it", "client", cl.ID, "topic", pk.TopicName, "err", err)
	}
	return h.refuse(cl, pk, err)
}

// refuse answers a publish a sink or the cluster did not take.
func (h *bridgeHook) refuse(cl *mqtt.Client, pk packets.Packet, err error) (packets.Packet, error) {
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		switch {
		case errors.Is(err, ack.ErrFull):
			return pk, packets.ErrQuotaExceeded
		case errors.Is(err, ack.ErrWriteFailed):
			return pk, packets.ErrUnspecifiedError
		}
		// 0x83 "valid, but the receiver is not willing to accept it" also
		// answers ack.ErrTooLarge: the record of a publish under
		// max_packet_size can be over a sink's message.max.bytes; 0x97
		// would tell the client to try again later, which never helps, and
		// 0x95 (packet too large) is not a PUBACK reason.
		return pk, packets.ErrImplementationSpecificError
	}
	if pk.FixedHeader.Qos > 0 && errors.Is(err, ack.ErrWriteFailed) {
		// A 3.1.1 client resends only on a new connection: without one it
		// would wait for this PUBACK for as long as the disk refuses writes.
		cl.Stop(errAckFailed)
	}
	// MQTT 3.1.1 has no negative PUBACK: not acknowledging makes the client send again.
	return pk, packets.ErrRejectPacket
}

func peerHost(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// fillProps copies the MQTT 5 properties EMQX shows in pub_props.
func fillProps(ev *rule.Event, p *packets.Properties) {
	for _, up := range p.User {
		ev.UserProps = append(ev.UserProps, [2]string{up.Key, up.Val})
	}
	if p.PayloadFormatFlag {
		ev.Props = append(ev.Props, rule.Prop{Name: "Payload-Format-Indicator", Num: int64(p.PayloadFormat), IsNum: true})
	}
	if p.MessageExpiryInterval > 0 {
		ev.Props = append(ev.Props, rule.Prop{Name: "Message-Expiry-Interval", Num: int64(p.MessageExpiryInterval), IsNum: true})
	}
	if p.ContentType != "" {
		ev.Props = append(ev.Props, rule.Prop{Name: "Content-Type", Str: p.ContentType})
	}
	if p.ResponseTopic != "" {
		ev.Props = append(ev.Props, rule.Prop{Name: "Response-Topic", Str: p.ResponseTopic})
	}
	if len(p.CorrelationData) > 0 {
		ev.Props = append(ev.Props, rule.Prop{Name: "Correlation-Data", Str: string(bytes.Clone(p.CorrelationData))})
	}
}
