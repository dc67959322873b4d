package cluster

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// Session is a session's record in the sessions topic, keyed by its client
// id: who holds it, and what a node resuming it needs.
type Session struct {
	// Owner is the user name that made the session.
	Owner string `json:"owner"`
	// Node holds the session; Connected tells whether its client is
	// connected there.
	Node      string `json:"node"`
	Connected bool   `json:"connected"`
	// Persistent sessions outlive their connection.
	Persistent bool `json:"persistent"`
	// Claim is a node asking Node to end the connection and hand over.
	Claim string `json:"claim,omitempty"`
	// Refused is a node whose connection or claim of another user the
	// holder refused: that node refuses its client (0x87).
	Refused string `json:"refused,omitempty"`
	// Epoch grows with each claim and each connection.
	Epoch   uint64 `json:"epoch"`
	Version byte   `json:"protocol_version"`
	// Expiry is the Session Expiry Interval in seconds (0: never, for a
	// persistent session), counted from Disconnected (Unix seconds).
	Expiry       uint32 `json:"expiry"`
	Disconnected int64  `json:"disconnected,omitempty"`
	// From is the offset of the session's partition of the queues topic
	// from which what was queued for it is not delivered yet.
	From          int64          `json:"from"`
	Subscriptions []Subscription `json:"subscriptions,omitempty"`
	// Will is the client's will while it may still be due: published
	// once, by the node responsible for the session, when its delay has
	// passed since the connection ended (or since its holder was shown
	// down), unless a connection takes the session first.
	Will *Will `json:"will,omitempty"`
}

// Will is a client's will message and its Will Delay Interval in seconds.
type Will struct {
	Message *Message
	Delay   uint32
}

// willRecord is a Will in a session record: its message encoded as it
// crosses nodes.
type willRecord struct {
	Delay   uint32 `json:"delay,omitempty"`
	Message []byte `json:"message"`
}

// MarshalJSON encodes w with its message as it crosses nodes.
func (w Will) MarshalJSON() ([]byte, error) {
	return json.Marshal(willRecord{Delay: w.Delay, Message: appendMessage(nil, w.Message)})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (w *Will) UnmarshalJSON(b []byte) error {
	var r willRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	m, err := decodeMessage(r.Message)
	if err != nil {
		return fmt.Errorf("cluster: will: %w", err)
	}
	w.Message, w.Delay = m, r.Delay
	return nil
}

// Subscription is a subscription of a session, with its options.
type Subscription struct {
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
	Identifier        int    `json:"identifier,omitempty"`
}

// expired reports whether a session offline since since (Unix seconds)
// has ended at now.
func (s *Session) expired(since int64, now time.Time) bool {
	return !s.Persistent || s.Expiry > 0 && since+int64(s.Expiry) <= now.Unix()
}

// willDue reports whether the will of a session offline since since is
// due at now: its delay passed, or the session ended [MQTT-3.1.3-9].
func (s *Session) willDue(since int64, now time.Time) bool {
	return s.Will != nil && (since+int64(s.Will.Delay) <= now.Unix() || s.expired(since, now))
}

// sessionTable is every session of the cluster as the sessions topic tells
// them, and an index of the filters of those whose messages are queued in
// Kafka: persistent sessions offline, or held by a node that is down.
type sessionTable struct {
	mu   sync.Mutex
	byID map[string]*Session
	down map[string]time.Time // nodes shown down, since when
	// changed is closed, and replaced, at each change of byID.
	changed chan struct{}
	index   *mqtt.TopicsIndex
	inIndex map[string]*Session // the sessions whose filters are in index
	// handing are the sessions in index that moved to another node (or
	// connected there) since this node read so: a publish the holder has
	// no route for yet is still queued, for grace, and the holder reads
	// it from the queue.
	self    string
	grace   time.Duration
	handing map[string]handover
	// queued counts the sessions in index: 0 lets a publish skip matching.
	queued atomic.Int64
	// idLens counts the sessions in index by the length of their id, the
	// longest of which is longest (-1: none).
	idLens  map[int]int
	longest atomic.Int64
}

// handover is a session connected on node, queued for until until.
type handover struct {
	node  string
	until time.Time
}

// newSessionTable is the table of node self, which queues for a session
// connected on another node for grace after it reads so.
func newSessionTable(self string, grace time.Duration) *sessionTable {
	t := &sessionTable{byID: map[string]*Session{}, down: map[string]time.Time{}, changed: make(chan struct{}),
		index: mqtt.NewTopicsIndex(), inIndex: map[string]*Session{}, self: self, grace: grace, handing: map[string]handover{},
		idLens: map[int]int{}}
	t.longest.Store(-1)
	return t
}

// get returns a copy of id's record, nil if there is none.
func (t *sessionTable) get(id string) (*Session, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byID[id]
	if s == nil {
		return nil, t.changed
	}
	c := *s
	return &c, t.changed
}

// live returns a copy of id's record, nil if there is none or it ended
// at now.
func (t *sessionTable) live(id string, now time.Time) *Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byID[id]
	if s == nil {
		return nil
	}
	if since, offline := t.offlineSince(s); offline && s.expired(since, now) {
		return nil
	}
	c := *s
	return &c
}

// offlineSince tells whether s has no connection, and since when (Unix
// seconds): since its disconnect, or since its holder was shown down,
// which ended its connection; t.mu held.
func (t *sessionTable) offlineSince(s *Session) (int64, bool) {
	if !s.Connected {
		return s.Disconnected, true
	}
	if since, down := t.down[s.Node]; down {
		return since.Unix(), true
	}
	return 0, false
}

// set applies a record (nil: a tombstone) and reports whether it took it.
// A record of an older epoch than the one applied is stale (written by a
// node that had not read the newer one yet, as a will's sweep racing a
// resume) and is not taken.
func (t *sessionTable) set(id string, s *Session) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.byID[id]
	if s == nil {
		delete(t.byID, id)
	} else if cur != nil && s.Epoch < cur.Epoch {
		return false
	} else {
		t.byID[id] = s
	}
	if s != nil && s.Persistent && s.Connected && s.Node != t.self && (cur == nil || !cur.Connected || cur.Node != s.Node) {
		t.handing[id] = handover{node: s.Node, until: time.Now().Add(t.grace)}
	}
	t.reindex(id, s)
	close(t.changed)
	t.changed = make(chan struct{})
	return true
}

// nodeUp queues, or stops queueing, for the connected sessions of a node
// as it goes down or comes back.
func (t *sessionTable) nodeUp(node string, up bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if up {
		delete(t.down, node)
	} else {
		t.down[node] = now
	}
	for id, s := range t.byID {
		if s.Node == node {
			t.reindex(id, s)
		}
	}
}

// reindex puts id's filters into the index while its messages are to be
// queued in Kafka; t.mu held.
func (t *sessionTable) reindex(id string, s *Session) {
	queue := false
	if s != nil && s.Persistent {
		_, queue = t.offlineSince(s)
	}
	if queue {
		delete(t.handing, id)
	} else {
		queue = t.handsOver(id, s, time.Now())
	}
	if old := t.inIndex[id]; old != nil {
		if queue && old == s {
			return
		}
		for _, sub := range old.Subscriptions {
			t.index.Unsubscribe(sub.Filter, id)
		}
		delete(t.inIndex, id)
		t.queued.Add(-1)
		t.countID(id, -1)
	}
	if !queue {
		return
	}
	for _, sub := range s.Subscriptions {
		t.index.Subscribe(id, packets.Subscription{Filter: sub.Filter, Qos: sub.QoS})
	}
	t.inIndex[id] = s
	t.queued.Add(1)
	t.countID(id, 1)
}

// countID counts id into (by +1) or out of (by -1) the index's ids and
// keeps longest; t.mu held.
func (t *sessionTable) countID(id string, by int) {
	n := len(id)
	t.idLens[n] += by
	switch {
	case by > 0:
		t.longest.Store(max(t.longest.Load(), int64(n)))
	case t.idLens[n] == 0:
		delete(t.idLens, n)
		// Only the last id of the longest length changes it.
		if int64(n) == t.longest.Load() {
			longest := -1
			for l := range t.idLens {
				longest = max(longest, l)
			}
			t.longest.Store(int64(longest))
		}
	}
}

// handsOver reports whether id, connected on another node, is still
// queued for: this node read that it moved there less than grace ago;
// t.mu held.
func (t *sessionTable) handsOver(id string, s *Session, now time.Time) bool {
	h, ok := t.handing[id]
	if !ok || s == nil || !s.Persistent || !s.Connected || h.node != s.Node || now.After(h.until) {
		delete(t.handing, id)
		return false
	}
	return true
}

// handedOver stops queueing for the sessions whose grace passed at now.
func (t *sessionTable) handedOver(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, h := range t.handing {
		if now.After(h.until) {
			t.reindex(id, t.byID[id])
		}
	}
}

// handingTo is the node id is connected on while it is still queued for,
// "" if it is not connected.
func (t *sessionTable) handingTo(id string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.handing[id].node
}

// match returns the sessions whose messages are queued in Kafka that
// subscribe to topic, with the highest QoS they subscribe with.
func (t *sessionTable) match(topic string) map[string]byte {
	subs := t.index.Subscribers(topic)
	if len(subs.Subscriptions) == 0 {
		return nil
	}
	out := make(map[string]byte, len(subs.Subscriptions))
	for id, sub := range subs.Subscriptions {
		out[id] = sub.Qos
	}
	return out
}

// longestMatch is the length of the longest client id of the sessions
// queued in Kafka that subscribe to topic, -1 if there is none.
func (t *sessionTable) longestMatch(topic string) int {
	if t.queued.Load() == 0 {
		return -1
	}
	longest := -1
	for id := range t.index.Subscribers(topic).Subscriptions {
		longest = max(longest, len(id))
	}
	return longest
}

// due returns what node must do at now for the sessions it is
// responsible for: publish the wills due, and tombstone the sessions that
// ended (at now - late, so that a tombstone never lands after the record
// of a node that took a session over). Each session is the job of its
// holder, or while the holder is down of the first of the nodes up by
// name, so that one node does it.
func (t *sessionTable) due(node string, up []string, now time.Time, late time.Duration) (wills map[string]*Session, ended []string) {
	sort.Strings(up)
	t.mu.Lock()
	defer t.mu.Unlock()
	wills = map[string]*Session{}
	for id, s := range t.byID {
		since, offline := t.offlineSince(s)
		if !offline {
			continue
		}
		responsible := s.Node
		if _, down := t.down[s.Node]; down && len(up) > 0 {
			responsible = up[0]
		}
		if responsible != node {
			continue
		}
		if s.willDue(since, now) {
			c := *s
			wills[id] = &c
		}
		if s.expired(since, now.Add(-late)) {
			ended = append(ended, id)
		}
	}
	return wills, ended
}

// count is how many sessions the cluster has, and how many of them queue
// their messages in Kafka because they are offline.
func (t *sessionTable) count() (all int, queued int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID), t.queued.Load() - int64(len(t.handing))
}

// maxEpoch bounds the epoch of a record read: epochs grow by one a claim
// or a connection, so a larger one is another writer's, and applying it
// would leave no epoch for the nodes' records to follow it with.
const maxEpoch = 1 << 53

// decodeSession reads a record of the sessions topic.
func decodeSession(value []byte) (*Session, error) {
	if value == nil {
		return nil, nil
	}
	s := new(Session)
	if err := json.Unmarshal(value, s); err != nil {
		return nil, err
	}
	if s.Epoch > maxEpoch {
		return nil, fmt.Errorf("cluster: session epoch %d beyond %d", s.Epoch, uint64(maxEpoch))
	}
	return s, nil
}
