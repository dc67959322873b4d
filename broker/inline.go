package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/conf"
)

// ErrClosed is returned by publishes after the inline publisher was closed.
var ErrClosed = errors.New("broker: inline publisher closed")

// ErrTopicLimit is returned by publishes to a topic over max_topic_levels or
// max_topic_length.
var ErrTopicLimit = fmt.Errorf("broker: %w: over the broker's topic limits", conf.ErrInvalidTopic)

// ErrRetainedLimit is returned by retained publishes to a new topic once
// max_retained_messages topics hold one: like ErrTopicLimit it is final, so
// a Kafka source drops the message instead of retrying it for good.
var ErrRetainedLimit = fmt.Errorf("broker: %w: over max_retained_messages", conf.ErrInvalidTopic)

// Publish hands a message to the broker as mochi's inline client. When it
// returns, the message is routed: queued to every matching subscriber with
// the subscription's QoS up to qos, stored in the offline sessions of
// persistent subscribers, retained if asked. The publish runs the rules
// like any other publish.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte, userProps [][2]string) error {
	// mochi does not ask OnTopicCheck for its inline client, and a topic
	// rendered from a Kafka record or a republish template is no more
	// trusted than a device's.
	if reason := b.limits.exceeds(topic, false); reason != "" {
		return fmt.Errorf("%w: %s (%d bytes)", ErrTopicLimit, reason, len(topic))
	}
	// Nor does it ask OnRetainCheck: a source's retained records would
	// otherwise bypass max_retained_messages.
	if retain && len(payload) > 0 && b.limits.retainedFull(topic) {
		b.refused.add(reasonRetained)
		return fmt.Errorf("%w: topic %q", ErrRetainedLimit, topic)
	}
	cl, ok := b.srv.Clients.Get(mqtt.InlineClientId)
	if !ok {
		return errors.New("broker: no inline client")
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		TopicName:   topic,
		Payload:     payload,
		// mochi never acknowledges an inline publish, but its validity
		// check wants a packet id on QoS > 0, as its own Server.Publish does.
		PacketID: uint16(qos),
	}
	if len(userProps) > 0 {
		pk.Properties.User = make([]packets.UserProperty, len(userProps))
		for i, kv := range userProps {
			pk.Properties.User[i] = packets.UserProperty{Key: kv[0], Val: kv[1]}
		}
	}
	if err := b.srv.InjectPacket(cl, pk); err != nil {
		return fmt.Errorf("broker: publish to %q: %w", topic, err)
	}
	return nil
}

// Inline publishes into the broker for the bridge: Kafka sources and the
// republish action. It exists before the broker does, because rule
// actions are built before the broker that runs the rules; Bind attaches
// the running broker, and publishes made before wait for it.
type Inline struct {
	ready  chan struct{}
	once   sync.Once
	b      *Broker
	flow   *flowHook
	closed atomic.Bool
}

// NewInline returns an inline publisher waiting for Bind.
func NewInline() *Inline { return &Inline{ready: make(chan struct{})} }

// Bind attaches the started broker and its flow control; binding the same
// broker again (after a reconfiguration) changes nothing.
func (in *Inline) Bind(b *Broker) error {
	select {
	case <-in.ready:
		if in.b == b {
			return nil
		}
		return errors.New("broker: inline publisher already bound or closed")
	default:
	}
	caps := b.srv.Options.Capabilities
	high := int(min(int32(caps.MaximumInflight), caps.MaximumClientWritesPending)) / 2
	if n := b.queue.maxLen; n > 0 {
		// Past max_mqueue_len, what waits for a subscriber's quota is dropped.
		high = min(high, n/2)
	}
	f := &flowHook{high: max(high, 1), low: max(high/2, 1), congested: map[*mqtt.Client]time.Time{}}
	if n := b.queue.maxBytes; n > 0 {
		// Likewise past max_mqueue_bytes.
		f.highBytes, f.lowBytes = max(n/2, 1), max(n/4, 1)
	}
	if err := b.srv.AddHook(f, nil); err != nil {
		return fmt.Errorf("broker: flow control: %w", err)
	}
	in.b, in.flow = b, f
	in.once.Do(func() { close(in.ready) })
	return nil
}

// Close makes every later publish fail with ErrClosed and releases the
// publishes waiting for Bind.
func (in *Inline) Close() {
	in.closed.Store(true)
	in.once.Do(func() { close(in.ready) })
}

func (in *Inline) broker(ctx context.Context) (*Broker, error) {
	select {
	case <-in.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if in.closed.Load() || in.b == nil {
		return nil, ErrClosed
	}
	return in.b, nil
}

// Publish is Broker.Publish once the broker is bound.
func (in *Inline) Publish(ctx context.Context, topic string, payload []byte, retain bool, qos byte, userProps [][2]string) error {
	b, err := in.broker(ctx)
	if err != nil {
		return err
	}
	return b.Publish(topic, payload, retain, qos, userProps)
}

// stallLimit is how long a connected subscriber may hold back the bridge's
// publishes without acknowledging any; after it, the subscriber is treated
// as stuck and mochi's own limits apply to it.
const stallLimit = 10 * time.Second

// WaitRoom blocks while a connected subscriber of the bridge's publishes
// has more unacknowledged QoS 1/2 messages than half its broker-side
// limit. Without it a Kafka backlog outruns a subscriber, and mochi
// silently drops what no longer fits its inflight store or write queue.
// Offline sessions never hold the bridge back: they queue up to mochi's
// limits, as MQTT says. It returns ctx's error if ctx ends first.
func (in *Inline) WaitRoom(ctx context.Context) error {
	if _, err := in.broker(ctx); err != nil {
		return err
	}
	f := in.flow
	if f.n.Load() == 0 {
		return nil
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for f.blocked() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// flowHook tracks the connected clients whose inflight store the bridge's
// publishes filled past the high watermark, until they are below the low one.
type flowHook struct {
	mqtt.HookBase
	high, low int
	// highBytes and lowBytes are the same for payload bytes; 0: none.
	highBytes, lowBytes int64
	n                   atomic.Int32 // len(congested), read without the lock
	mu                  sync.Mutex
	congested           map[*mqtt.Client]time.Time // since when, refreshed by each acknowledgement
}

func (f *flowHook) ID() string { return "mqkafka-bridge-flow" }

func (f *flowHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnDisconnect:
		return true
	}
	return false
}

func (f *flowHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, resends int) {
	if resends > 0 || pk.Origin != mqtt.InlineClientId || cl.Closed() {
		return
	}
	if cl.State.Inflight.Len() < f.high && (f.highBytes == 0 || cl.State.Inflight.Bytes() < f.highBytes) {
		return
	}
	f.mu.Lock()
	if _, ok := f.congested[cl]; !ok {
		f.congested[cl] = time.Now()
		f.n.Store(int32(len(f.congested)))
	}
	f.mu.Unlock()
}

func (f *flowHook) OnQosComplete(cl *mqtt.Client, _ packets.Packet) { f.progress(cl) }
func (f *flowHook) OnQosDropped(cl *mqtt.Client, _ packets.Packet)  { f.progress(cl) }

func (f *flowHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if f.n.Load() == 0 {
		return
	}
	f.mu.Lock()
	f.remove(cl)
	f.mu.Unlock()
}

// progress notes an acknowledgement: the client is alive, and maybe drained.
func (f *flowHook) progress(cl *mqtt.Client) {
	if f.n.Load() == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.congested[cl]; !ok {
		return
	}
	if cl.State.Inflight.Len() <= f.low && (f.lowBytes == 0 || cl.State.Inflight.Bytes() <= f.lowBytes) {
		f.remove(cl)
		return
	}
	f.congested[cl] = time.Now()
}

func (f *flowHook) remove(cl *mqtt.Client) {
	delete(f.congested, cl)
	f.n.Store(int32(len(f.congested)))
}

// blocked reports whether a congested client acknowledged something within stallLimit.
func (f *flowHook) blocked() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for cl, since := range f.congested {
		if cl.Closed() {
			f.remove(cl)
			continue
		}
		if now.Sub(since) < stallLimit {
			return true
		}
	}
	return false
}
