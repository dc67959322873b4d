package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/cluster"
)

// Router is the cluster as the broker sees it (cluster.Node is one).
type Router interface {
	// Remote reports whether any other node has a route at all.
	Remote() bool
	// Route sends m to the other nodes with a matching route and returns
	// which of localShared this node delivers.
	Route(m *cluster.Message, localShared []string) []string
	// Subscribed tells whether this node still has subscribers for filter.
	Subscribed(filter string, has bool)
	// Retained shares a retained message, or its clearing.
	Retained(m *cluster.Message)
	// Full reports whether this node announces as many filters as it may.
	Full() bool
	// TooLarge returns an error wrapping ack.ErrTooLarge when m, retained
	// or routed, would make a record larger than Kafka takes.
	TooLarge(m *cluster.Message) error
	// Room bounds the records of a publish whatever its topic: one it
	// fits needs no TooLarge.
	Room() cluster.Room
}

// reasonRoutes counts the filters refused because this node announces
// [cluster] max_routes.
const reasonRoutes = "max_routes"

// reasonClusterTooLarge counts the publishes refused because their record
// to the other nodes would be larger than Kafka takes.
const reasonClusterTooLarge = "cluster_too_large"

// clusterClientPrefix names the inline client that delivers what other
// nodes send; a random suffix keeps a device from taking its id.
const clusterClientPrefix = "$cluster-"

// JoinCluster makes the broker one node of a cluster: each publish also
// goes to the other nodes r routes it to, and r learns this node's
// subscriptions and retained messages. It must be called before Start.
func (b *Broker) JoinCluster(r Router) error {
	h := &clusterHook{srv: b.srv, r: r, refusedTooLarge: b.refused.counter(reasonClusterTooLarge),
		refusedRoutes: b.refused.counter(reasonRoutes)}
	h.client = b.srv.NewClient(nil, mqtt.LocalListener, clusterClientPrefix+fmt.Sprintf("%x", b.bridge.idPrefix), true)
	if err := b.srv.AddHook(h, nil); err != nil {
		return fmt.Errorf("broker: cluster: %w", err)
	}
	b.bridge.cluster = h.client
	b.bridge.route = h
	b.cluster = h
	return nil
}

// ErrNoCluster is returned by the cluster's calls on a broker that did not join one.
var ErrNoCluster = errors.New("broker: not in a cluster")

// ErrExpired is returned by Deliver for a message whose Message Expiry
// Interval ran out on its way from another node.
var ErrExpired = errors.New("broker: message expired")

// Deliver hands a publish from another node to this node's subscribers
// only: it runs no rules (the node it came in ran them), is not routed
// again and is not retained (retained messages travel on their own). Its
// shared filters are delivered only if the sender picked this node.
func (b *Broker) Deliver(m *cluster.Message) error {
	h := b.cluster
	if h == nil {
		return ErrNoCluster
	}
	h.deliverMu.Lock()
	defer h.deliverMu.Unlock()
	h.groups = m.SharedGroupsTaken
	defer func() { h.groups = nil }()
	pk := crossPacket(m)
	pk.FixedHeader.Retain = false
	if pk.Expiry > 0 && pk.Expiry <= time.Now().Unix() {
		return fmt.Errorf("broker: deliver to %q: %w", m.Topic, ErrExpired)
	}
	if err := b.srv.InjectPacket(h.client, pk); err != nil {
		return fmt.Errorf("broker: deliver to %q: %w", m.Topic, err)
	}
	return nil
}

// Retain sets, or clears, a retained message another node shared,
// delivering it to no one.
func (b *Broker) Retain(m *cluster.Message) {
	pk := crossPacket(m)
	pk.FixedHeader.Retain = true
	if pk.Expiry > 0 && pk.Expiry < time.Now().Unix() {
		pk.Payload = nil
	}
	r := b.srv.Topics.RetainMessage(pk)
	atomic.StoreInt64(&b.srv.Info.Retained, int64(b.srv.Topics.Retained.Len()))
	if b.store != nil && (r != 0 || len(pk.Payload) > 0) {
		b.store.OnRetainMessage(b.cluster.client, pk, r)
	}
}

// Filters lists every filter this node's sessions subscribe to, offline
// persistent ones included.
func (b *Broker) Filters() []string {
	seen := map[string]bool{}
	var out []string
	for _, cl := range b.srv.Clients.GetAll() {
		for f := range cl.State.Subscriptions.GetAll() {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// PublishWill publishes m, the will of client id kept by the cluster, to
// every subscriber of the cluster.
func (b *Broker) PublishWill(id string, m *cluster.Message) error {
	if reason := b.limits.exceeds(m.Topic, false); reason != "" {
		return fmt.Errorf("%w: %s (%d bytes)", ErrTopicLimit, reason, len(m.Topic))
	}
	pk := crossPacket(m)
	pk.PacketID, pk.Expiry = 0, 0
	b.srv.PublishWill(id, pk)
	return nil
}

// Connections is how many MQTT clients are connected.
func (b *Broker) Connections() int64 { return atomic.LoadInt64(&b.srv.Info.ClientsConnected) }

// crossPacket is m as mochi publishes it.
func crossPacket(m *cluster.Message) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS, Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		// mochi's validity check wants a packet id on QoS > 0, as for any inline publish.
		PacketID: uint16(m.QoS),
		Created:  m.Created,
	}
	p := &pk.Properties
	if m.PayloadFormat != nil {
		p.PayloadFormat, p.PayloadFormatFlag = *m.PayloadFormat, true
	}
	if m.ExpiryInterval > 0 {
		pk.Expiry = m.Created + int64(m.ExpiryInterval)
		// A subscriber gets what is left of the interval [MQTT-3.3.2-6]:
		// mochi counts it again from the packet's arrival here.
		p.MessageExpiryInterval = uint32(max(pk.Expiry-time.Now().Unix(), 0))
	}
	p.ContentType, p.ResponseTopic, p.CorrelationData = m.ContentType, m.ResponseTopic, m.CorrelationData
	for _, kv := range m.UserProps {
		p.User = append(p.User, packets.UserProperty{Key: kv[0], Val: kv[1]})
	}
	return pk
}

// crossMessage is pk as it crosses nodes; a value, so that a look at it
// that keeps nothing does not allocate the message.
func crossMessage(pk *packets.Packet) cluster.Message {
	m := cluster.Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain,
		Origin: pk.Origin, Created: pk.Created}
	p := &pk.Properties
	if p.PayloadFormatFlag {
		format := p.PayloadFormat
		m.PayloadFormat = &format
	}
	m.ExpiryInterval = p.MessageExpiryInterval
	m.ContentType, m.ResponseTopic, m.CorrelationData = p.ContentType, p.ResponseTopic, p.CorrelationData
	if len(p.User) > 0 {
		m.UserProps = make([][2]string, len(p.User))
		for i, up := range p.User {
			m.UserProps[i] = [2]string{up.Key, up.Val}
		}
	}
	return m
}

// clusterHook routes every publish to the other nodes that subscribe to
// it and tells the cluster this node's filters and retained messages.
type clusterHook struct {
	mqtt.HookBase
	srv    *mqtt.Server
	r      Router
	client *mqtt.Client
	// announceMu orders announcements, so that the last one made for a
	// filter is the index's state after its last change.
	announceMu sync.Mutex
	// deliverMu serializes Deliver; groups are the shared filters of the
	// message it is injecting, read by OnSelectSubscribers in its goroutine.
	deliverMu sync.Mutex
	groups    []string

	refusedTooLarge, refusedRoutes *atomic.Int64
}

func (h *clusterHook) ID() string { return "mqkafka-cluster" }

func (h *clusterHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSelectSubscribers, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnRetainMessage, mqtt.OnSubscriptionCheck:
		return true
	}
	return false
}

// tooLarge refuses a publish whose record to the other nodes Kafka would
// refuse after its publisher had the PUBACK. A publish the router's room
// fits is not matched against the routes: routing matches it once.
func (h *clusterHook) tooLarge(pk *packets.Packet) error {
	if strings.HasPrefix(pk.TopicName, "$") || !(h.r.Remote() || pk.FixedHeader.Retain && len(pk.Payload) > 0) {
		return nil
	}
	if m := crossMessage(pk); h.r.Room().Fits(&m) {
		return nil
	}
	// Built again for the router, which keeps it as far as the compiler can
	// tell: the one Fits reads stays on the stack.
	m := crossMessage(pk)
	err := h.r.TooLarge(&m)
	if err != nil {
		h.refusedTooLarge.Add(1)
	}
	return err
}

func (h *clusterHook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if pk.Origin == h.client.ID {
		for f := range subs.Shared {
			if !contains(h.groups, f) {
				delete(subs.Shared, f)
			}
		}
		return subs
	}
	// $SYS and the like are this node's own.
	if strings.HasPrefix(pk.TopicName, "$") || !h.r.Remote() {
		return subs
	}
	var local []string
	for f := range subs.Shared {
		local = append(local, f)
	}
	m := crossMessage(&pk)
	keep := h.r.Route(&m, local)
	for _, f := range local {
		if !contains(keep, f) {
			delete(subs.Shared, f)
		}
	}
	return subs
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// OnSubscriptionCheck refuses a filter no session here subscribes to yet
// once the node announces max_routes: each is a record in the routes topic
// and an entry in every node's memory, and max_subscriptions bounds one
// session only (mochi answers 0x97 quota exceeded; MQTT 3.1.1: 0x80).
func (h *clusterHook) OnSubscriptionCheck(cl *mqtt.Client, filter string) bool {
	if h.srv.Topics.Subscribed(filter) || !h.r.Full() {
		return true
	}
	h.refusedRoutes.Add(1)
	return false
}

func (h *clusterHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code {
			h.announce(f.Filter)
		}
	}
}

func (h *clusterHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	for _, f := range pk.Filters {
		h.announce(f.Filter)
	}
}

// announce tells the cluster whether any session here still subscribes to filter.
func (h *clusterHook) announce(filter string) {
	h.announceMu.Lock()
	defer h.announceMu.Unlock()
	h.r.Subscribed(filter, h.srv.Topics.Subscribed(filter))
}

func (h *clusterHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	if cl == h.client || strings.HasPrefix(pk.TopicName, "$") {
		return
	}
	m := crossMessage(&pk)
	if m.Created == 0 {
		m.Created = time.Now().Unix()
	}
	h.r.Retained(&m)
}
