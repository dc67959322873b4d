package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/logx"
)

// maxHandoverWait bounds how long a CONNECT waits for the node holding its
// session connected to end that connection and hand the session over: a
// node that is up answers in a few Kafka round trips.
const maxHandoverWait = 2 * time.Second

// queueWait bounds a read of a session's queue and the wait for the
// offset of a hand-over mark.
const queueWait = 10 * time.Second

// ErrOwner is returned by Claim when the node holding the session refused
// the claim: the session is another user's.
var ErrOwner = errors.New("cluster: the session belongs to another user")

// Claimed is what Claim found for a client id.
type Claimed struct {
	// Session is the session to resume, nil if there is none or it expired.
	Session *Session
	// Messages were queued for it while it was offline, in order.
	Messages []*Message
	// From is where the session's queue is read up to.
	From int64
}

// Session returns the live record of client id: nil if there is none or
// it expired.
func (n *Node) Session(id string) *Session { return n.sessions.live(id, time.Now()) }

// Claim makes this node the one that holds client id's session. If another
// node that is up holds it connected, it is asked to end that connection
// and hand over, and Claim waits for it (up to one Kafka round trip and
// a bit; at most maxHandoverWait); the claim carries owner, the user name
// of the connecting client, and a holder whose connection is of another
// user refuses it (ErrOwner). With resume, the messages queued for
// the session are read, up to limit (0: no limit; what is over is dropped
// and counted).
func (n *Node) Claim(ctx context.Context, id, owner string, resume, persistent bool, limit int) (Claimed, error) {
	n.awaitRelease(ctx, id)
	s := n.Session(id)
	if s != nil && s.Connected && s.Node != n.cfg.Node && n.answers(s.Node) {
		claim := *s
		claim.Claim, claim.Epoch, claim.Owner, claim.Refused = n.cfg.Node, s.Epoch+1, owner, ""
		n.putSession(id, &claim)
		s = n.awaitHandover(ctx, id, claim.Epoch)
		if s != nil && s.Refused == n.cfg.Node && s.Owner != owner {
			return Claimed{}, fmt.Errorf("cluster: claim of %s refused by %s: %w", id, s.Node, ErrOwner)
		}
	}
	if resume && s != nil && s.Persistent && s.Connected && s.Node != n.cfg.Node {
		// Its holder is down or did not answer: what was in flight to the
		// session there is not in its queue.
		n.notHandedOver.Add(1)
	}
	var c Claimed
	if !persistent && (s == nil || !resume) {
		return c, nil
	}
	from := int64(kafka.OffsetEnd)
	if resume && s != nil && s.Persistent {
		c.Session, from = s, s.From
	}
	// A failed read hands over what it read and where it got to, so that
	// the next resume reads on from there, not from offset 0.
	var err error
	c.Messages, c.From, err = n.readQueue(ctx, id, from, limit)
	return c, err
}

// awaitHandover waits until the record of id says the old holder let the
// session go (or epoch passed), and returns the record then.
func (n *Node) awaitHandover(ctx context.Context, id string, epoch uint64) *Session {
	ctx, cancel := context.WithTimeout(ctx, min(n.cfg.NodeTimeout, maxHandoverWait))
	defer cancel()
	for {
		s, changed := n.sessions.get(id)
		if s == nil || !s.Connected || s.Epoch > epoch || s.Node == n.cfg.Node {
			return s
		}
		select {
		case <-changed:
		case <-ctx.Done():
			n.log.Warn("session takeover: the node holding it did not hand it over in time; no more waiting for it until its next heartbeat",
				"client", id, "node", s.Node)
			n.mu.Lock()
			n.unanswered[s.Node] = time.Now()
			n.mu.Unlock()
			return s
		}
	}
}

// answers reports whether node is worth waiting for: up as its heartbeats
// tell, and not silent to a claim since its last heartbeat.
func (n *Node) answers(node string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.members[node]
	if m == nil || !m.up {
		return false
	}
	since, silent := n.unanswered[node]
	return !silent || m.last.After(since)
}

// Hold records that client id is connected here with session s; a
// negative s.From keeps the recorded one. A session resumed with its
// subscriptions has its queue read on from s.From for tailGrace, so that
// what the other nodes queue before they know is delivered to it.
func (n *Node) Hold(id string, s Session) {
	if s.Persistent && s.From >= 0 && len(s.Subscriptions) > 0 {
		n.tails.add(id, n.queuePartition(id), s.From, time.Now().Add(n.tailGrace()))
	}
	cur, _ := n.sessions.get(id)
	if cur != nil {
		s.Epoch = cur.Epoch + 1
		if s.From < 0 {
			s.From = cur.From
		}
	}
	s.Node, s.Connected, s.Claim, s.Refused, s.Disconnected = n.cfg.Node, true, "", "", 0
	s.Will = n.boundWill(id, &s)
	n.putSession(id, &s)
}

// boundWill is s's will if the record keeping it fits in a record of the
// sessions topic, nil otherwise: the will then stays with the node the
// connection is on, which alone publishes it.
func (n *Node) boundWill(id string, s *Session) *Will {
	if s.Will == nil {
		return nil
	}
	size, fits := n.recordFits(id, s)
	if fits {
		return s.Will
	}
	if logx.Allowed(&n.lastTooLargeLog) {
		n.log.Warn("will kept by this node only: its session's record would be larger than message.max.bytes (if this node dies, the will is not published)",
			"client", id, "bytes", size, "max", n.maxRecord)
	}
	return nil
}

// Fits reports whether client id's session s, but for its will (kept by
// its node when it does not fit), fits in a record of the sessions topic
// with the largest epoch, offsets and times a node may give it.
func (n *Node) Fits(id string, s Session) bool {
	s.Will, s.Node, s.Claim, s.Connected = nil, n.cfg.Node, n.cfg.Node, true
	s.Epoch, s.Disconnected, s.From = maxEpoch, math.MaxInt64, math.MaxInt64
	_, fits := n.recordFits(id, &s)
	return fits
}

// recordFits is the size of s's record and whether it fits in a record of
// the sessions topic.
func (n *Node) recordFits(id string, s *Session) (int, bool) {
	value, err := json.Marshal(s)
	return len(value), err == nil && conf.RecordOverhead+len(id)+len(value) <= n.maxRecord
}

// Release records that client id's connection here ended: its session
// (unless it was not persistent and no node claims it) goes to Kafka. What
// was in flight for it is queued first, after a mark whose offset the
// record keeps, so that the node resuming it reads both in order. The
// record is written once Kafka has the mark, by the node's release worker:
// the caller, a connection's goroutine, does not wait for Kafka. It
// reports whether the record keeps s's will, which the cluster then
// publishes when it is due.
func (n *Node) Release(id string, s Session, inflight []*Message) bool {
	r := &release{id: id, s: s, done: make(chan struct{}), deadline: time.Now().Add(queueWait),
		undelivered: n.tails.drop(id, n.queuePartition(id))}
	if s.Persistent {
		r.reports, r.err = n.queueInflight(id, inflight)
	}
	r.s.Will = n.boundWill(id, &r.s)
	n.releasesMu.Lock()
	n.releasing[id] = r
	n.releasesMu.Unlock()
	select {
	case n.releases <- r:
		return r.s.Will != nil
	default:
	}
	n.releasesFull.Add(1)
	select {
	case n.releases <- r:
	case <-n.ctx.Done():
		n.released(r)
	}
	return r.s.Will != nil
}

// release is a session leaving this node, its record waiting for Kafka to
// take the mark that starts its queue.
type release struct {
	id       string
	s        Session
	reports  chan kafka.Event // the mark's delivery report; nil: no mark
	err      error            // the mark's, if it was not sent
	deadline time.Time
	done     chan struct{}
	// undelivered is where the records queued for the session before
	// the mark that this node's reading of its queue did not deliver
	// start, -1 if it was not read.
	undelivered int64
}

// maxReleases bounds the releases waiting for Kafka; a disconnect finding
// them full waits for room, and is counted.
const maxReleases = 4096

// releaseSessions writes the records of the released sessions, in order,
// until Close.
func (n *Node) releaseSessions() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case r := <-n.releases:
			n.finishRelease(r)
		}
	}
}

// finishRelease writes r's record once Kafka has its mark.
func (n *Node) finishRelease(r *release) {
	defer n.released(r)
	id, s := r.id, r.s
	cur, _ := n.sessions.get(id)
	if cur != nil && cur.Node != n.cfg.Node {
		return // another node holds it already
	}
	claimed := cur != nil && cur.Claim != ""
	if !s.Persistent && !claimed {
		if cur != nil {
			n.putSession(id, nil)
		}
		return
	}
	if cur != nil {
		s.Epoch, s.From = cur.Epoch, cur.From
	}
	if s.Persistent {
		err := r.err
		var offset int64
		if err == nil {
			offset, err = markOffset(id, r.reports, r.deadline)
		}
		if err != nil {
			n.log.Warn("session released without its messages in flight (they are delivered again from where it was resumed)",
				"client", id, "err", err)
		} else {
			s.From = offset
			if r.undelivered >= 0 {
				s.From = min(offset, r.undelivered)
			}
		}
	}
	s.Node, s.Connected, s.Claim, s.Disconnected = n.cfg.Node, false, "", time.Now().Unix()
	n.putSession(id, &s)
}

// released ends r's wait.
func (n *Node) released(r *release) {
	n.releasesMu.Lock()
	if n.releasing[r.id] == r {
		delete(n.releasing, r.id)
	}
	n.releasesMu.Unlock()
	close(r.done)
}

// releasePending reports whether a release of id waits here.
func (n *Node) releasePending(id string) bool {
	n.releasesMu.Lock()
	defer n.releasesMu.Unlock()
	return n.releasing[id] != nil
}

// awaitRelease waits for the release of id under way here, if any: a new
// connection resumes the session from the record it writes, with what was
// in flight.
func (n *Node) awaitRelease(ctx context.Context, id string) {
	n.releasesMu.Lock()
	r := n.releasing[id]
	n.releasesMu.Unlock()
	if r == nil {
		return
	}
	select {
	case <-r.done:
	case <-ctx.Done():
	}
}

// awaitReleases waits, within ctx, for every release under way.
func (n *Node) awaitReleases(ctx context.Context) {
	n.releasesMu.Lock()
	var all []*release
	for _, r := range n.releasing {
		all = append(all, r)
	}
	n.releasesMu.Unlock()
	for _, r := range all {
		select {
		case <-r.done:
		case <-ctx.Done():
			return
		}
	}
}

// End removes client id's session from the cluster, if this node holds it.
func (n *Node) End(id string) {
	n.tails.drop(id, n.queuePartition(id))
	if cur, _ := n.sessions.get(id); cur != nil && cur.Node == n.cfg.Node && cur.Claim == "" {
		n.putSession(id, nil)
	}
}

// putSession applies a record here at once and shares it.
func (n *Node) putSession(id string, s *Session) {
	n.sessions.set(id, s)
	var value []byte
	if s != nil {
		value, _ = json.Marshal(s)
	}
	n.produceState(topicSessions, id, value)
}

// applySession takes a record of the sessions topic; another node holding
// or claiming a session this node holds ends its connection here, unless
// the two connections are of different users and the broker checks
// owners: then the one whose record came first in the topic keeps the
// session. A stale record decides nothing but that race (applyStale).
func (n *Node) applySession(id string, value []byte, loading bool) {
	s, err := decodeSession(value)
	if err != nil {
		n.log.Warn("cluster session record unreadable", "client", id, "err", err)
		return
	}
	prev, _ := n.sessions.get(id)
	taken := n.sessions.set(id, s)
	if loading || s == nil || n.local == nil {
		n.confirm(id, false)
		return
	}
	if !taken {
		n.applyStale(id, s)
		return
	}
	if !n.fromAnother(s) {
		n.confirm(id, s.Node == n.cfg.Node && s.Connected && s.Claim == "")
		return
	}
	if n.otherUserHere(id, s) {
		n.refuseOther(id, prev, s)
		return
	}
	n.confirm(id, false)
	// A release under way here answers the claim with its record.
	if !n.local.TakeOver(id) && s.Node == n.cfg.Node && !n.releasePending(id) {
		// Nothing here to hand over: the claimant need not wait.
		off := *s
		off.Claim, off.Connected, off.Disconnected = "", false, time.Now().Unix()
		n.putSession(id, &off)
	}
}

// applyStale takes s, a record of client id older than the one applied,
// written by a node that had not read that one: the newer record settles
// what s would, so s ends no connection here, makes this node write
// nothing and keeps its connection confirmed. Only the race of two users
// goes by the topic's order, not by epochs: another user's connection or
// claim read before this node's record of its connection came back was
// first, and refuses that connection, as refuseOther does.
func (n *Node) applyStale(id string, s *Session) {
	if n.fromAnother(s) && n.otherUserHere(id, s) && !n.isConfirmed(id) {
		n.local.Refuse(id)
	}
}

// fromAnother reports whether s is another node's connection, or another
// node's claim of a session this node holds; this node's own claim, read
// back, is not.
func (n *Node) fromAnother(s *Session) bool {
	return s.Claim != n.cfg.Node && (s.Claim != "" && s.Node == n.cfg.Node || s.Connected && s.Node != n.cfg.Node)
}

// otherUserHere reports whether client id is connected here as another
// user than s's owner, with the broker checking owners.
func (n *Node) otherUserHere(id string, s *Session) bool {
	owner, ok := n.local.OwnerHere(id)
	return ok && owner != s.Owner
}

// refuseOther settles s, a record of another user's connection or claim
// of client id, whose connection here is of a different user: if this
// node's record of its connection came first (prev is that record), it
// keeps the session and writes it again, refusing s's node; otherwise its
// connection is the one refused.
func (n *Node) refuseOther(id string, prev, s *Session) {
	other := s.Node
	if s.Claim != "" {
		other = s.Claim
	}
	if n.isConfirmed(id) && s.Refused != n.cfg.Node && prev != nil && prev.Node == n.cfg.Node && prev.Connected {
		r := *prev
		r.Epoch, r.Claim, r.Refused = s.Epoch+1, "", other
		n.putSession(id, &r)
		return
	}
	n.confirm(id, false)
	n.local.Refuse(id)
}

// confirm records whether client id's record of a connection here is the
// last one read from the sessions topic.
func (n *Node) confirm(id string, here bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if here {
		n.confirmed[id] = true
	} else {
		delete(n.confirmed, id)
	}
}

// isConfirmed reports whether client id's record of a connection here was
// read back and no other record of it since.
func (n *Node) isConfirmed(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.confirmed[id]
}

// queuePartition is the partition of the queues topic of client id's session.
func (n *Node) queuePartition(id string) int32 { return int32(fnv(id) % uint32(n.queueParts)) }

// queue writes m to the queue of each session offline in Kafka that
// subscribes to its topic, at QoS min(publish, subscription), and to that
// of each session just connected on a node m is not routed to yet; QoS 0
// is not queued.
func (n *Node) queue(m *Message) {
	if n.sessions.queued.Load() == 0 || m.QoS == 0 {
		return
	}
	for id, qos := range n.sessions.match(m.Topic) {
		if to := n.sessions.handingTo(id); to != "" && n.routes.reaches(to, m.Topic) {
			continue // the node it is connected on gets m routed
		}
		q := *m
		q.QoS, q.SharedGroupsTaken = min(q.QoS, qos), nil
		if q.QoS == 0 {
			continue
		}
		n.produceQueue(id, appendMessage(nil, &q), nil)
	}
}

func (n *Node) produceQueue(id string, value []byte, reports chan kafka.Event) error {
	err := n.msgs.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &n.queuesTopic, Partition: n.queuePartition(id)},
		Key:            []byte(id),
		Value:          value,
	}, reports)
	if err != nil {
		n.sessionDrops.Add(1)
		if logx.Allowed(&n.lastDropLog) {
			n.log.Warn("message for an offline session dropped (max_queue_bytes reached while Kafka does not take them)",
				"client", id, "err", err)
		}
	}
	return err
}

// markValue is a record of the queues topic that is no message: where a
// session's queue starts over.
var markValue = []byte{0}

// queueInflight writes a mark and then inflight to id's queue; the
// mark's delivery report comes on the channel returned.
func (n *Node) queueInflight(id string, inflight []*Message) (chan kafka.Event, error) {
	n.life.RLock()
	defer n.life.RUnlock()
	if n.closed {
		return nil, errors.New("cluster: closed")
	}
	reports := make(chan kafka.Event, 1)
	if err := n.produceQueue(id, markValue, reports); err != nil {
		return nil, err
	}
	for _, m := range inflight {
		_ = n.produceQueue(id, appendMessage(nil, m), nil)
	}
	return reports, nil
}

// markOffset waits, until deadline, for the report of id's queue mark and
// returns its offset.
func markOffset(id string, reports chan kafka.Event, deadline time.Time) (int64, error) {
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	select {
	case ev := <-reports:
		msg, ok := ev.(*kafka.Message)
		if !ok || msg.TopicPartition.Error != nil {
			return 0, fmt.Errorf("cluster: queue mark of %s: %v", id, ev)
		}
		return int64(msg.TopicPartition.Offset), nil
	case <-wait.C:
		return 0, fmt.Errorf("cluster: queue mark of %s not acknowledged within %s", id, queueWait)
	}
}

// readQueue reads id's queue from offset from (kafka.OffsetEnd: nothing,
// only where it ends) to its end, keeping up to limit messages, and
// returns where it read to: from, or where it stopped, if it fails.
func (n *Node) readQueue(ctx context.Context, id string, from int64, limit int) ([]*Message, int64, error) {
	c, err := n.queueReader()
	if err != nil {
		return nil, from, err
	}
	defer func() { n.readers <- c }()
	p := n.queuePartition(id)
	_, high, err := c.QueryWatermarkOffsets(n.queuesTopic, p, waitMillis(ctx))
	if err != nil {
		return nil, from, fmt.Errorf("cluster: the end of queue partition %d: %w", p, err)
	}
	if from < 0 || from >= high {
		return nil, high, nil
	}
	if err := c.Assign([]kafka.TopicPartition{{Topic: &n.queuesTopic, Partition: p, Offset: kafka.Offset(from)}}); err != nil {
		return nil, from, fmt.Errorf("cluster: reading queue partition %d: %w", p, err)
	}
	defer func() { _ = c.Unassign() }()
	ctx, cancel := context.WithTimeout(ctx, queueWait)
	defer cancel()
	var out []*Message
	for next := from; next < high; {
		if ctx.Err() != nil {
			return out, next, fmt.Errorf("cluster: queue of %s read to %d of %d: %w", id, next, high, ctx.Err())
		}
		msg, ok := c.Poll(100).(*kafka.Message)
		if !ok {
			continue
		}
		next = int64(msg.TopicPartition.Offset) + 1
		if string(msg.Key) != id || len(msg.Value) == 0 || msg.Value[0] != codecVersion {
			continue
		}
		if limit > 0 && len(out) >= limit {
			n.sessionDrops.Add(1)
			continue
		}
		m, err := decodeMessage(msg.Value)
		if err != nil {
			n.sessionDrops.Add(1)
			continue
		}
		out = append(out, m)
	}
	return out, high, nil
}

// maxQueueReaders bounds the consumers that read sessions' queues at once.
const maxQueueReaders = 4

// queueReader takes a consumer for reading queues, made when fewer than
// maxQueueReaders exist.
func (n *Node) queueReader() (*kafka.Consumer, error) {
	select {
	case c := <-n.readers:
		return c, nil
	default:
	}
	n.readersMu.Lock()
	if n.readersMade < maxQueueReaders {
		n.readersMade++
		n.readersMu.Unlock()
		cm := n.consumerConfig(topicQueues)
		c, err := kafka.NewConsumer(&cm)
		if err != nil {
			n.readersMu.Lock()
			n.readersMade--
			n.readersMu.Unlock()
			return nil, fmt.Errorf("cluster: kafka consumer: %w", err)
		}
		n.goLogs(c.Logs())
		return c, nil
	}
	n.readersMu.Unlock()
	return <-n.readers, nil
}

// closeReaders closes the queue readers, waiting for those in use.
func (n *Node) closeReaders() {
	n.readersMu.Lock()
	made := n.readersMade
	n.readersMu.Unlock()
	for range made {
		_ = (<-n.readers).Close()
	}
}

// sweepSessions publishes the wills due and tombstones the sessions
// ended that this node is responsible for.
func (n *Node) sweepSessions(now time.Time) {
	var up []string
	n.mu.Lock()
	for node, m := range n.members {
		if m.up {
			up = append(up, node)
		}
	}
	n.mu.Unlock()
	// Ended late by the time a takeover may take, so that a tombstone
	// never lands after the record of the node that took a session over.
	wills, ended := n.sessions.due(n.cfg.Node, up, now, maxHandoverWait)
	for id, s := range wills {
		if err := n.local.PublishWill(id, s.Will.Message); err != nil {
			n.log.Warn("will not published", "client", id, "topic", s.Will.Message.Topic, "err", err)
		}
		n.willsPublished.Add(1)
		s.Will = nil
		n.putSession(id, s)
	}
	for _, id := range ended {
		n.putSession(id, nil)
	}
}

func fnv(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}
