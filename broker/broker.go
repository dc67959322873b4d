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
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/rule"
)

// Publisher takes the publishes that rules read.
type Publisher interface {
	Matches(topic string) bool
	Publish(ctx context.Context, ev *rule.Event) error
}

// Broker is the running MQTT broker.
type Broker struct {
	srv *mqtt.Server
	ids []string
	log *slog.Logger
}

// New builds a broker; Start opens its listeners.
func New(cfg conf.Broker, node string, pub Publisher, log *slog.Logger) (*Broker, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	// mochi copies a publisher's MQTT 5 properties into the PUBACK otherwise.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       slog.New(quietHandler{log.Handler()}).With("component", "mqtt"),
		InlineClient: true,
	})
	if cfg.Auth.AllowAnonymous {
		if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	} else {
		if err := srv.AddHook(new(denyHook), nil); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	h := &bridgeHook{pub: pub, node: node, log: log.With("component", "bridge")}
	if _, err := rand.Read(h.idPrefix[:]); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b := &Broker{srv: srv, log: log}
	for i, l := range cfg.Listeners {
		id := fmt.Sprintf("%s-%d", l.Type, i)
		if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: id, Address: l.Address})); err != nil {
			return nil, fmt.Errorf("broker: listener %s: %w", l.Address, err)
		}
		b.ids = append(b.ids, id)
	}
	return b, nil
}

// Start serves the listeners.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}

// Addrs returns the listeners' bound addresses.
func (b *Broker) Addrs() []string {
	var out []string
	for _, id := range b.ids {
		if l, ok := b.srv.Listeners.Get(id); ok {
			out = append(out, l.Address())
		}
	}
	return out
}

// Close stops accepting, disconnects every client and stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }

// denyHook refuses every connection: anonymous access is off and no users
// are configured.
type denyHook struct{ mqtt.HookBase }

func (h *denyHook) ID() string { return "deny-anonymous" }
func (h *denyHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (h *denyHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return false }
func (h *denyHook) OnACLCheck(*mqtt.Client, string, bool) bool              { return false }

// bridgeHook hands publishes to the rules inside OnPublish, which mochi runs
// before it writes the PUBACK/PUBREC: a QoS 1/2 publish is acknowledged only
// once every sink that reads it has it in its buffer.
type bridgeHook struct {
	mqtt.HookBase
	pub      Publisher
	node     string
	log      *slog.Logger
	idPrefix [8]byte
	idSeq    atomic.Uint64

	lastRefusal atomic.Int64 // unix ns of the last refusal logged
}

func (h *bridgeHook) ID() string { return "mqkafka-bridge" }

func (h *bridgeHook) Provides(b byte) bool { return b == mqtt.OnPublish }

func (h *bridgeHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !h.pub.Matches(pk.TopicName) {
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
	err := h.pub.Publish(context.Background(), ev)
	if err == nil {
		return pk, nil
	}
	now = time.Now().UnixNano()
	if last := h.lastRefusal.Load(); now-last > int64(time.Second) && h.lastRefusal.CompareAndSwap(last, now) {
		h.log.Warn("publish refused: a sink did not take it", "client", cl.ID, "topic", pk.TopicName, "err", err)
	}
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		if errors.Is(err, buffer.ErrFull) {
			return pk, packets.ErrQuotaExceeded
		}
		return pk, packets.ErrImplementationSpecificError
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

// quietHandler drops mochi's per-packet error line for publishes the bridge
// refused: those are counted and logged, rate-limited, by the bridge itself,
// and mochi's line would print the whole packet once per refused publish.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet error" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as)}
}
func (h quietHandler) WithGroup(n string) slog.Handler { return quietHandler{h.Handler.WithGroup(n)} }
