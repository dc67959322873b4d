package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/cluster"
	"github.com/mqkafka/mqkafka/internal/logx"
)

// Sessions is where a cluster keeps its sessions (cluster.Node is one).
type Sessions interface {
	// Session is client id's live session record, nil if none.
	Session(id string) *cluster.Session
	// Claim makes this node the holder of id's session, taking it over
	// from the node holding it connected (cluster.ErrOwner: that node's
	// connection is of another user than owner), and with resume reads what was
	// queued for it (up to limit).
	Claim(ctx context.Context, id, owner string, resume, persistent bool, limit int) (cluster.Claimed, error)
	// Hold records that id is connected here.
	Hold(id string, s cluster.Session)
	// Release records that id's connection here ended, queuing inflight,
	// and reports whether the cluster keeps s's will (and publishes it).
	Release(id string, s cluster.Session, inflight []*cluster.Message) bool
	// End removes id's session from the cluster.
	End(id string)
	// Fits reports whether id's session s fits in the cluster's record.
	Fits(id string, s cluster.Session) bool
}

// ShareSessions keeps this node's sessions in the cluster's: a CONNECT
// takes its session over from whichever node holds it, and a persistent
// session whose client goes lives on in Kafka, not here. It must be called
// after JoinCluster and before Start.
func (b *Broker) ShareSessions(s Sessions) error {
	if b.cluster == nil {
		return ErrNoCluster
	}
	h := &sessionHook{srv: b.srv, s: s, routes: b.cluster, store: b.store, ownerCheck: b.access.sessionOwner,
		refused: b.refused, limit: b.queue.maxLen, log: b.log.With("component", "cluster-sessions")}
	if err := b.srv.AddHook(h, nil); err != nil {
		return fmt.Errorf("broker: cluster sessions: %w", err)
	}
	b.sessions = h
	return nil
}

// TakeOver ends client id's connection here, with DISCONNECT 0x8E for
// MQTT 5, because its session continues on another node; a delayed will
// of id is cancelled [MQTT-3.1.3-9]. It reports whether a connection ended.
func (b *Broker) TakeOver(id string) bool {
	b.srv.CancelDelayedWill(id)
	h := b.sessions
	return h != nil && b.endHere(id, &h.handover, packets.ErrSessionTakenOver)
}

// OwnerHere is the user name of client id's connection here, if there is
// one and session_owner_check is on.
func (b *Broker) OwnerHere(id string) (string, bool) {
	h := b.sessions
	if h == nil || !h.ownerCheck {
		return "", false
	}
	cl, ok := b.srv.Clients.Get(id)
	if !ok || cl.Closed() || cl.Net.Inline {
		return "", false
	}
	return string(cl.Properties.Username), true
}

// Refuse ends client id's connection here with DISCONNECT 0x87 for MQTT 5,
// because another user's session in the cluster has that id; the
// connection leaves nothing to the cluster, its will included. It is
// counted as refused session_owner.
func (b *Broker) Refuse(id string) bool {
	h := b.sessions
	if h == nil {
		return false
	}
	if cl, ok := b.srv.Clients.Get(id); ok {
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	b.srv.CancelDelayedWill(id)
	if !b.endHere(id, &h.refusedHere, packets.ErrNotAuthorized) {
		return false
	}
	h.refusedOwner(id, "", "")
	return true
}

// endHere ends client id's connection here with code, marking it in
// marks for OnDisconnect; it reports whether a connection ended.
func (b *Broker) endHere(id string, marks *sync.Map, code packets.Code) bool {
	cl, ok := b.srv.Clients.Get(id)
	if !ok || cl.Closed() || cl.Net.Inline {
		return false
	}
	marks.Store(cl, true)
	if h := b.sessions; h != nil && h.deferEnd(cl, code) {
		return true
	}
	_ = b.srv.DisconnectClient(cl, code)
	return true
}

// connecting is a client from its CONNECT to its CONNACK: what it
// claimed, and an end asked for it meanwhile. mochi adds a client before
// it writes the CONNACK, and a DISCONNECT must not come first
// [MQTT-3.2.0-1], so OnSessionEstablished sends that end.
type connecting struct {
	claimed cluster.Claimed
	// end is nil until an end is asked for or the CONNACK is written
	// (connackWritten), whichever comes first.
	end atomic.Pointer[packets.Code]
}

// connackWritten marks a connecting client whose CONNACK is written.
var connackWritten = new(packets.Code)

// deferEnd keeps code for cl if its CONNACK is not written yet.
func (h *sessionHook) deferEnd(cl *mqtt.Client, code packets.Code) bool {
	v, ok := h.claims.Load(cl)
	return ok && v.(*connecting).end.CompareAndSwap(nil, &code)
}

// sessionHook moves sessions between this node and the cluster.
type sessionHook struct {
	mqtt.HookBase
	srv        *mqtt.Server
	s          Sessions
	routes     *clusterHook
	store      *storeHook // nil without persistence
	ownerCheck bool
	refused    *refusals
	limit      int
	log        *slog.Logger
	// claims are the clients between OnConnect and OnSessionEstablished.
	claims sync.Map // *mqtt.Client → *connecting
	// handover marks the clients whose session another node took;
	// refusedHere those ended because the session is another user's.
	handover     sync.Map // *mqtt.Client → bool
	refusedHere  sync.Map // *mqtt.Client → bool
	lastRefusal  atomic.Int64
	lastTooLarge atomic.Int64
}

func (h *sessionHook) ID() string { return "mqkafka-cluster-sessions" }

func (h *sessionHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscriptionCheck, mqtt.OnSubscribed, mqtt.OnUnsubscribed:
		return true
	}
	return false
}

// persistent reports whether cl's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// OnConnect checks the session's owner cluster-wide, claims the session
// and, to resume it from another node, puts it here as an offline session
// that mochi then hands to cl as it would a local one.
func (h *sessionHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Net.Inline {
		return nil
	}
	owner := string(cl.Properties.Username)
	if s := h.s.Session(cl.ID); h.othersSession(s, owner) {
		return h.refuse(cl, s.Node)
	}
	c, err := h.s.Claim(context.Background(), cl.ID, owner, !pk.Connect.Clean, persistent(cl), h.limit)
	if errors.Is(err, cluster.ErrOwner) {
		return h.refuse(cl, "")
	}
	// The record may have changed between the check above and the
	// claim's answer (a claim its holder read as stale): a session of
	// another user is not handed to this one.
	if h.othersSession(c.Session, owner) {
		return h.refuse(cl, c.Session.Node)
	}
	if err != nil {
		h.log.Warn("session resumed without what was queued for it", "client", cl.ID, "err", err)
	}
	if c.Session != nil {
		if _, local := h.srv.Clients.Get(cl.ID); !local {
			h.srv.Clients.Add(h.offline(cl.ID, c.Session))
		}
	}
	h.claims.Store(cl, &connecting{claimed: c})
	return nil
}

// refuse answers cl's CONNECT with 0x87 (3.1.1: 5): its client id is of
// another user's session, held on node.
func (h *sessionHook) refuse(cl *mqtt.Client, node string) error {
	h.refusedOwner(cl.ID, string(cl.Properties.Username), node)
	if err := h.srv.SendConnack(cl, packets.ErrNotAuthorized, false, nil); err != nil {
		return fmt.Errorf("refused session send ack: %w", err)
	}
	return packets.ErrNotAuthorized
}

// refusedOwner counts and logs a client refused because its client id is
// of another user's session.
func (h *sessionHook) refusedOwner(id, username, node string) {
	h.refused.add("session_owner")
	if logx.Allowed(&h.lastRefusal) {
		h.log.Info("client refused: its client id belongs to another user's session in the cluster (logged at most once a second)",
			"client", id, "username", username, "node", node)
	}
}

// offline is session s of client id as mochi keeps a disconnected one.
func (h *sessionHook) offline(id string, s *cluster.Session) *mqtt.Client {
	cl := h.srv.NewClient(nil, mqtt.LocalListener, id, false)
	cl.Properties.Username = []byte(s.Owner)
	cl.Properties.ProtocolVersion = s.Version
	cl.Properties.Props.SessionExpiryInterval, cl.Properties.Props.SessionExpiryIntervalFlag = s.Expiry, true
	for _, sub := range s.Subscriptions {
		cl.State.Subscriptions.Add(sub.Filter, packets.Subscription{Filter: sub.Filter, Qos: sub.QoS, NoLocal: sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, Identifier: sub.Identifier})
	}
	cl.Stop(packets.ErrSessionTakenOver)
	return cl
}

// OnSessionEstablished delivers what was queued for a resumed session,
// records that it is connected here and announces its subscriptions.
func (h *sessionHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	c := cluster.Claimed{From: -1}
	if v, ok := h.claims.LoadAndDelete(cl); ok {
		p := v.(*connecting)
		c = p.claimed
		if code := p.end.Swap(connackWritten); code != nil {
			_ = h.srv.DisconnectClient(cl, *code)
			return
		}
	}
	if h.anotherUsers(cl) {
		return
	}
	for _, m := range c.Messages {
		if err := h.deliver(cl, m); err != nil {
			h.log.Debug("queued message not delivered", "client", cl.ID, "topic", m.Topic, "err", err)
		}
	}
	// Recorded first: a node reading the record before the routes keeps
	// queueing what it does not route here yet, which this node reads.
	h.s.Hold(cl.ID, h.record(cl, c.From))
	for f := range cl.State.Subscriptions.GetAll() {
		h.routes.announce(f)
	}
}

// othersSession reports whether s is a session of another user than
// owner, which session_owner_check keeps from owner.
func (h *sessionHook) othersSession(s *cluster.Session, owner string) bool {
	return h.ownerCheck && s != nil && s.Owner != owner
}

// anotherUsers ends cl's connection (DISCONNECT 0x87, 3.1.1: close; no
// will) if, since OnConnect checked it, a record of another user's
// session with its client id came in: that record is before the one cl's
// would be, so the other user keeps the session, as the holder decides
// for records in the other order.
func (h *sessionHook) anotherUsers(cl *mqtt.Client) bool {
	owner := string(cl.Properties.Username)
	s := h.s.Session(cl.ID)
	if !h.othersSession(s, owner) {
		return false
	}
	atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	h.refusedHere.Store(cl, true)
	_ = h.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	h.refusedOwner(cl.ID, owner, s.Node)
	return true
}

// deliver hands m, queued for cl's session, to cl at the QoS it was
// queued with.
func (h *sessionHook) deliver(cl *mqtt.Client, m *cluster.Message) error {
	return h.srv.PublishToClient(cl, packets.Subscription{Qos: m.QoS}, crossPacket(m))
}

// ErrNotConnected is returned by DeliverQueued for a client id with no
// connection here.
var ErrNotConnected = errors.New("broker: client not connected here")

// DeliverQueued hands m, queued in the cluster for client id's session,
// to its connection here.
func (b *Broker) DeliverQueued(id string, m *cluster.Message) error {
	h := b.sessions
	if h == nil {
		return ErrNoCluster
	}
	cl, ok := b.srv.Clients.Get(id)
	if !ok || cl.Closed() || cl.Net.Inline {
		return fmt.Errorf("%w: %s", ErrNotConnected, id)
	}
	return h.deliver(cl, m)
}

// OnDisconnect releases the session to the cluster: a persistent one
// leaves this node with what was in flight for it, which goes to Kafka.
func (h *sessionHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline || cl.Net.Conn == nil {
		return
	}
	_, handedOver := h.handover.LoadAndDelete(cl)
	_, refused := h.refusedHere.LoadAndDelete(cl)
	h.claims.Delete(cl)
	if cl.IsTakenOver() && !handedOver {
		return // by a client of this node, which holds the session now
	}
	if refused {
		h.drop(cl)
		return
	}
	if expire && !handedOver {
		h.s.End(cl.ID)
		return
	}
	var inflight []*cluster.Message
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish {
			m := crossMessage(&pk)
			inflight = append(inflight, &m)
		}
	}
	if h.s.Release(cl.ID, h.record(cl, -1), inflight) || handedOver {
		// The cluster publishes it once, from whichever node is then
		// responsible for the session.
		h.srv.CancelDelayedWill(cl.ID)
	}
	if expire {
		return
	}
	h.drop(cl)
}

// drop removes cl's session from this node, where the cluster keeps it no
// longer.
func (h *sessionHook) drop(cl *mqtt.Client) {
	if cur, ok := h.srv.Clients.Get(cl.ID); ok && cur == cl {
		cl.ClearInflights()
		h.srv.UnsubscribeClient(cl)
		h.srv.Clients.Delete(cl.ID)
		if h.store != nil {
			h.store.OnClientExpired(cl)
		}
	}
}

// maxSubscriptionIdentifier is the largest Subscription Identifier MQTT 5
// allows.
const maxSubscriptionIdentifier = 268_435_455

// OnSubscriptionCheck refuses a filter (SUBACK 0x97) that would make a
// persistent session's record too large for the cluster to keep: accepted,
// the session would lose it on its next node.
func (h *sessionHook) OnSubscriptionCheck(cl *mqtt.Client, filter string) bool {
	if !persistent(cl) {
		return true
	}
	s := h.record(cl, -1)
	s.Subscriptions = append(slices.DeleteFunc(s.Subscriptions, func(sub cluster.Subscription) bool { return sub.Filter == filter }),
		cluster.Subscription{Filter: filter, QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, Identifier: maxSubscriptionIdentifier})
	if h.s.Fits(cl.ID, s) {
		return true
	}
	h.refused.add("session_too_large")
	if logx.Allowed(&h.lastTooLarge) {
		h.log.Info("subscription refused: its session's record would be larger than message.max.bytes (logged at most once a second)",
			"client", cl.ID, "filter", filter, "subscriptions", len(s.Subscriptions))
	}
	return false
}

// OnSubscribed records a connected persistent session's new subscriptions.
func (h *sessionHook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) { h.update(cl) }

// OnUnsubscribed records a connected persistent session's subscriptions.
func (h *sessionHook) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) { h.update(cl) }

func (h *sessionHook) update(cl *mqtt.Client) {
	if !cl.Net.Inline && !cl.Closed() && persistent(cl) {
		h.s.Hold(cl.ID, h.record(cl, -1))
	}
}

// record is cl's session as the cluster keeps it; from < 0 keeps the
// recorded offset of its queue. A session with no expiry interval of its
// own (MQTT 3.1.1) is kept for max_session_expiry, as on one node.
func (h *sessionHook) record(cl *mqtt.Client, from int64) cluster.Session {
	expiry := h.srv.Options.Capabilities.MaximumSessionExpiryInterval
	if cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryIntervalFlag {
		expiry = cl.Properties.Props.SessionExpiryInterval
	}
	s := cluster.Session{Owner: string(cl.Properties.Username), Persistent: persistent(cl), Version: cl.Properties.ProtocolVersion,
		Expiry: expiry, From: from}
	for _, sub := range cl.State.Subscriptions.GetAll() {
		s.Subscriptions = append(s.Subscriptions, cluster.Subscription{Filter: sub.Filter, QoS: sub.Qos, NoLocal: sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, Identifier: sub.Identifier})
	}
	if w := &cl.Properties.Will; atomic.LoadUint32(&w.Flag) == 1 {
		s.Will = &cluster.Will{Delay: w.WillDelayInterval, Message: willMessage(cl.ID, w)}
	}
	return s
}

// willMessage is will w of client id as it crosses nodes.
func willMessage(id string, w *mqtt.Will) *cluster.Message {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: w.Qos, Retain: w.Retain},
		TopicName: w.TopicName, Payload: w.Payload, Origin: id}
	pk.Properties = packets.Properties{User: w.User, PayloadFormat: w.PayloadFormat, PayloadFormatFlag: w.PayloadFormatFlag,
		ContentType: w.ContentType, ResponseTopic: w.ResponseTopic, CorrelationData: w.CorrelationData,
		MessageExpiryInterval: w.MessageExpiryInterval}
	m := crossMessage(&pk)
	return &m
}
