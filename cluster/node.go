// Package cluster joins mqkafka nodes into one MQTT broker through Kafka:
// membership, the routing table, publishes that cross nodes and retained
// messages all travel in the cluster's internal topics mqkafka.<name>.*.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/logx"
)

// Config is what a node needs to join its cluster.
type Config struct {
	conf.Cluster
	Node      string
	Connector conf.Connector
	// Version, Address and Admin are shown to the other nodes.
	Version, Address, Admin string
}

// Local is this node's broker as the cluster uses it.
type Local interface {
	// Deliver hands m to this node's subscribers only.
	Deliver(m *Message) error
	// Retain sets (empty payload: clears) a retained message in this
	// node's store without delivering it.
	Retain(m *Message)
	// Filters lists every filter this node's sessions subscribe to.
	Filters() []string
	// Connections is how many clients are connected here.
	Connections() int64
	// TakeOver ends the connection of client id here, if there is one,
	// because another node holds its session now, and cancels its delayed
	// will; the connection's end releases the session.
	TakeOver(id string) bool
	// OwnerHere is the user name of client id's connection here, if there
	// is one and the broker checks sessions' owners.
	OwnerHere(id string) (string, bool)
	// Refuse ends the connection of client id here as not authorised,
	// because another user's session has that id, leaving the session's
	// record to that user.
	Refuse(id string) bool
	// PublishWill publishes m as the will of client id, which the
	// cluster kept in its session's record.
	PublishWill(id string, m *Message) error
	// DeliverQueued hands m, queued for client id's session, to its
	// connection here.
	DeliverQueued(id string, m *Message) error
}

// Node is this process's membership of the cluster.
type Node struct {
	cfg    Config
	log    *slog.Logger
	routes *routes
	// sessions are the cluster's sessions; queuesTopic, of queueParts
	// partitions, holds the messages of those offline.
	sessions    *sessionTable
	queuesTopic string
	queueParts  int32
	// readers are idle consumers of the queues topic, readersMade of them
	// exist.
	readers      chan *kafka.Consumer
	readersMu    sync.Mutex
	readersMade  int
	sessionDrops atomic.Int64
	// releases feed the release worker; releasing are those under way,
	// by client id.
	releases     chan *release
	releasesMu   sync.Mutex
	releasing    map[string]*release
	releasesFull atomic.Int64
	// tails are the resumed sessions whose queues are still read.
	tails *tails
	// notHandedOver counts the sessions resumed without their holder's
	// hand-over; willsPublished the wills the cluster kept and published.
	notHandedOver  atomic.Int64
	willsPublished atomic.Int64

	state *kafka.Producer // routes, heartbeats, retained messages
	msgs  *kafka.Producer // cross-node publishes, within max_queue_bytes
	// stateIn reads the state topics from their start; msgsIn reads this
	// node's partition of the messages topic.
	stateIn, msgsIn *kafka.Consumer
	partitions      int32 // of the messages topic
	messagesTopic   string
	// maxRecord is the largest record, with librdkafka's framing, the
	// cluster sends: the connector's message.max.bytes, which the
	// internal topics must take (ensureTopics).
	maxRecord int
	// buffers hold the key and value of the records Route sends.
	buffers sync.Pool
	// retained holds what the start read, until Start applies it.
	retained map[string]*Message
	local    Local

	mu        sync.Mutex
	announced map[string]bool // this node's filters as last produced
	members   map[string]*member
	// unanswered are the nodes that let a session claim time out, and when.
	unanswered map[string]time.Time
	// confirmed are the client ids whose record of a connection here was
	// read back from the sessions topic: a record of another user read
	// after it came later, and is refused.
	confirmed map[string]bool
	// selfHeard is when this run's last heartbeat was sent, as read back.
	selfHeard time.Time
	// twin says which other process heartbeats under this node's name.
	twin string

	started          time.Time
	in, out, dropped atomic.Int64
	lastTooLargeLog  atomic.Int64
	lastTwinLog      atomic.Int64
	// life lets Close wait for the sends under way and refuse later ones:
	// a closed librdkafka producer must not be called. Held to write, it
	// also guards state and msgs, which renew replaces.
	life   sync.RWMutex
	closed bool
	// failed takes the producers librdkafka reports a fatal error of.
	failed chan *kafka.Producer
	// reachable is false from librdkafka's "all brokers down" until Kafka
	// next acknowledges or delivers a record.
	reachable   atomic.Bool
	lastDropLog atomic.Int64
	lastErrLog  atomic.Int64

	// ctx ends the goroutines in wg, which call the clients, so that
	// they are done before the clients close; those in clients read what
	// the clients send (logs, delivery reports) until they close.
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	clients sync.WaitGroup
	// stopReceiving ends the goroutine delivering other nodes' publishes;
	// received is closed when it has.
	stopReceiving context.CancelFunc
	received      chan struct{}
}

// member is a node as its heartbeats tell it.
type member struct {
	beat heartbeat
	last time.Time // its last heartbeat
	up   bool
}

// heartbeat is a node's record in the nodes topic.
type heartbeat struct {
	Version     string    `json:"version"`
	Address     string    `json:"address"`
	Admin       string    `json:"admin,omitempty"`
	Connections int64     `json:"connections"`
	Started     time.Time `json:"started"`
	// Stopped is set by a node that stops: the others show it down at once.
	Stopped bool `json:"stopped,omitempty"`
}

// New creates the node's producers; nothing is read before Load.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	n := &Node{cfg: cfg, log: log.With("component", "cluster"), routes: newRoutes(cfg.Node),
		announced: map[string]bool{}, members: map[string]*member{}, unanswered: map[string]time.Time{}, confirmed: map[string]bool{}, retained: map[string]*Message{}, started: time.Now()}
	n.messagesTopic = n.topic(topicMessages)
	n.sessions, n.queuesTopic, n.readers = newSessionTable(cfg.Node, cfg.HeartbeatInterval), n.topic(topicQueues), make(chan *kafka.Consumer, maxQueueReaders)
	n.releases, n.releasing, n.tails = make(chan *release, maxReleases), map[string]*release{}, newTails()
	n.buffers.New = func() any { return new([]byte) }
	var err error
	if n.maxRecord, err = conf.MessageMaxBytes(cfg.Connector.Properties); err != nil {
		return nil, fmt.Errorf("cluster: connector %s: %w", cfg.Connector.Name, err)
	}
	n.failed = make(chan *kafka.Producer, 2)
	if n.state, err = n.startProducer(stateRole); err != nil {
		return nil, err
	}
	if n.msgs, err = n.startProducer(topicMessages); err != nil {
		n.state.Close()
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.run(n.renewFailed)
	return n, nil
}

// stateRole names the producer of the state topics.
const stateRole = "state"

// startProducer creates role's producer (topicMessages or stateRole) and
// reads its logs and delivery reports until it closes.
func (n *Node) startProducer(role string) (*kafka.Producer, error) {
	queueBytes, acked := int64(1<<30), (*atomic.Int64)(nil)
	if role == topicMessages {
		queueBytes, acked = int64(n.cfg.MaxQueueBytes), &n.out
	}
	cm := n.producerConfig(role, queueBytes)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, fmt.Errorf("cluster: kafka producer: %w", err)
	}
	n.goLogs(p.Logs())
	n.untilClosed(func() { n.reports(p, acked) })
	return p, nil
}

// renewFailed replaces a producer librdkafka gave up on, which would
// refuse every record until the process restarts: an idempotent producer
// whose partition Kafka no longer knows in sequence (the messages topic
// deleted and created again) fails so. What it held is dropped, counted.
func (n *Node) renewFailed() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case old := <-n.failed:
			if err := n.renew(old); err != nil {
				n.log.Error("cluster producer not replaced after a fatal error", "err", err)
			}
		}
	}
}

func (n *Node) renew(old *kafka.Producer) error {
	n.life.Lock()
	var p **kafka.Producer
	var role string
	switch {
	case n.closed:
	case old == n.state:
		p, role = &n.state, stateRole
	case old == n.msgs:
		p, role = &n.msgs, topicMessages
	}
	if p == nil {
		n.life.Unlock()
		return nil
	}
	fresh, err := n.startProducer(role)
	if err != nil {
		n.life.Unlock()
		return err
	}
	*p = fresh
	n.life.Unlock()
	// Their delivery reports count what the old one held as dropped.
	_ = old.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
	old.Flush(1000)
	old.Close()
	n.log.Warn("cluster producer replaced after a fatal error", "role", role)
	return nil
}

func (n *Node) topic(name string) string { return n.cfg.TopicPrefix() + name }

// run starts a goroutine the node owns until Close.
func (n *Node) run(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// untilClosed starts a goroutine that ends when the clients close.
func (n *Node) untilClosed(f func()) {
	n.clients.Add(1)
	go func() {
		defer n.clients.Done()
		f()
	}()
}

// goLogs forwards a client's logs until it closes.
func (n *Node) goLogs(ch chan kafka.LogEvent) { n.untilClosed(func() { forwardLogs(ch, n.log) }) }

// Load creates or checks the internal topics and reads the state topics
// to their end: the nodes, the routes and the retained messages.
func (n *Node) Load(ctx context.Context) error {
	if err := n.ensureTopics(ctx); err != nil {
		return err
	}
	var err error
	cm := n.consumerConfig("state")
	if n.stateIn, err = kafka.NewConsumer(&cm); err != nil {
		return fmt.Errorf("cluster: kafka consumer: %w", err)
	}
	n.goLogs(n.stateIn.Logs())
	if n.partitions, err = partitionCount(n.stateIn, n.messagesTopic, ctx); err != nil {
		return err
	}
	if n.queueParts, err = partitionCount(n.stateIn, n.queuesTopic, ctx); err != nil {
		return err
	}
	var parts []kafka.TopicPartition
	for _, name := range stateTopics {
		t := n.topic(name)
		count, err := partitionCount(n.stateIn, t, ctx)
		if err != nil {
			return err
		}
		for p := range count {
			parts = append(parts, kafka.TopicPartition{Topic: &t, Partition: p, Offset: kafka.OffsetBeginning})
		}
	}
	if err := n.stateIn.Assign(parts); err != nil {
		return fmt.Errorf("cluster: reading the state topics: %w", err)
	}
	// A partition reaches its end again each time records arrive after
	// it did (other nodes' heartbeats do, every heartbeat_interval): each
	// partition counts once, or one could be left unread.
	type partition struct {
		topic string
		n     int32
	}
	unread := make(map[partition]bool, len(parts))
	for _, p := range parts {
		unread[partition{*p.Topic, p.Partition}] = true
	}
	for len(unread) > 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("cluster: reading the state topics: %d of %d partitions not read to their end: %w", len(unread), len(parts), ctx.Err())
		}
		switch ev := n.stateIn.Poll(100).(type) {
		case *kafka.Message:
			n.apply(ev, true)
		case kafka.PartitionEOF:
			delete(unread, partition{*ev.Topic, ev.Partition})
		case kafka.Error:
			n.logKafkaError(ev)
		}
	}
	n.checkMembers(time.Now())
	n.reachable.Store(true)
	n.log.Info("cluster state read", "nodes", len(n.members), "remote_routes", n.routes.size(), "retained", len(n.retained),
		"partitions", n.partitions)
	return nil
}

// Start applies the retained messages read, announces this node's routes
// (tombstoning those a former run left), then follows the cluster:
// heartbeats, state changes and publishes sent to this node.
func (n *Node) Start(local Local) error {
	n.local = local
	for _, m := range n.retained {
		local.Retain(m)
	}
	n.retained = nil
	n.mu.Lock()
	old := n.routes.filters(n.cfg.Node)
	for _, f := range local.Filters() {
		n.announce(f, true)
		delete(old, f)
	}
	for f := range old {
		n.announced[f] = true
		n.announce(f, false)
	}
	n.mu.Unlock()
	if err := n.startMessages(); err != nil {
		return err
	}
	// Listed at once, not when its first heartbeat is read back.
	hb := n.beat(false)
	n.mu.Lock()
	n.members[n.cfg.Node] = &member{beat: hb, last: time.Now(), up: true}
	n.mu.Unlock()
	n.run(n.followState)
	n.run(n.heartbeats)
	n.run(n.releaseSessions)
	n.run(n.followQueues)
	ctx, cancel := context.WithCancel(n.ctx)
	n.stopReceiving, n.received = cancel, make(chan struct{})
	go func() {
		defer close(n.received)
		n.followMessages(ctx)
	}()
	return nil
}

// StopReceiving stops delivering what other nodes send, before the
// broker closes: what is left stays in Kafka for this node's next start.
// It may be called again.
func (n *Node) StopReceiving() {
	if n.stopReceiving != nil {
		n.stopReceiving()
		<-n.received
	}
}

// startMessages assigns this node's partition of the messages topic from
// where the node left off; a node that never ran starts at the end, since
// nothing before its first routes was meant for it.
func (n *Node) startMessages() error {
	cm := n.consumerConfig(topicMessages)
	var err error
	if n.msgsIn, err = kafka.NewConsumer(&cm); err != nil {
		return fmt.Errorf("cluster: kafka consumer: %w", err)
	}
	n.goLogs(n.msgsIn.Logs())
	tp := kafka.TopicPartition{Topic: &n.messagesTopic, Partition: n.partitionOf(n.cfg.Node)}
	tp.Offset = kafka.OffsetInvalid
	committed, err := n.msgsIn.Committed([]kafka.TopicPartition{tp}, 10_000)
	var kerr kafka.Error
	switch {
	case err == nil:
		tp.Offset = committed[0].Offset
	case errors.As(err, &kerr) && kerr.Code() == kafka.ErrGroupIDNotFound:
		// Some brokers answer so for a group that never committed.
	default:
		return fmt.Errorf("cluster: the messages topic's committed offset: %w", err)
	}
	if tp.Offset < 0 {
		_, high, err := n.msgsIn.QueryWatermarkOffsets(n.messagesTopic, tp.Partition, 10_000)
		if err != nil {
			return fmt.Errorf("cluster: the messages topic's end: %w", err)
		}
		tp.Offset = kafka.Offset(high)
	}
	if err := n.msgsIn.Assign([]kafka.TopicPartition{tp}); err != nil {
		return fmt.Errorf("cluster: reading the messages topic: %w", err)
	}
	n.log.Info("cluster messages partition", "topic", n.messagesTopic, "partition", tp.Partition, "offset", tp.Offset)
	return nil
}

// partitionOf is the messages topic's partition a node reads, by the
// FNV-1a hash of its name; nodes may share one, each skipping what is not
// addressed to it.
func (n *Node) partitionOf(node string) int32 { return int32(fnv(node) % uint32(n.partitions)) }

// Close tells the others this node stops, waits up to ctx for what it
// queued to reach Kafka, and closes every client.
func (n *Node) Close(ctx context.Context) {
	n.awaitReleases(ctx)
	if n.local != nil {
		n.beat(true)
	}
	n.life.Lock()
	n.closed = true
	n.life.Unlock()
	for _, p := range []*kafka.Producer{n.state, n.msgs} {
		for p.Flush(100) > 0 && ctx.Err() == nil {
		}
	}
	n.StopReceiving()
	n.cancel()
	n.wg.Wait()
	n.closeReaders()
	for _, c := range []*kafka.Consumer{n.stateIn, n.msgsIn} {
		if c != nil {
			_ = c.Close()
		}
	}
	n.state.Close()
	n.msgs.Close()
	n.clients.Wait()
}

// Remote reports whether any other node has a route or any session is
// offline: without either, a publish has nothing to do with the cluster.
func (n *Node) Remote() bool { return n.routes.size() > 0 || n.sessions.queued.Load() > 0 }

// Route sends m to every other node that has subscribers for its topic
// and returns which of localShared (the shared filters this node's
// subscribers match) this node delivers.
func (n *Node) Route(m *Message, localShared []string) []string {
	n.life.RLock()
	defer n.life.RUnlock()
	if n.closed {
		return localShared
	}
	n.queue(m)
	dests, keep := n.routes.match(m.Topic, localShared)
	if len(dests) == 0 {
		return keep
	}
	bp := n.buffers.Get().(*[]byte)
	defer n.buffers.Put(bp)
	for _, d := range dests {
		m.SharedGroupsTaken = d.groups
		// librdkafka copies key and value: one buffer serves every record.
		b := append(append(append((*bp)[:0], d.node...), 0), m.Origin...)
		k := len(b)
		b = appendMessage(b, m)
		*bp = b
		err := n.msgs.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &n.messagesTopic, Partition: n.partitionOf(d.node)},
			Key:            b[:k],
			Value:          b[k:],
		}, nil)
		if err != nil {
			n.dropped.Add(1)
			if logx.Allowed(&n.lastDropLog) {
				n.log.Warn("cross-node publish dropped (max_queue_bytes reached while Kafka does not take them)",
					"to", d.node, "topic", m.Topic, "err", err)
			}
		}
	}
	m.SharedGroupsTaken = nil
	return keep
}

// TooLarge returns an error wrapping ack.ErrTooLarge when m would make a
// record larger than maxRecord: in the retained topic if it sets a retained
// message, in the messages topic for any other node its topic is routed to
// (counting every shared filter that node could be picked for), in the
// queues topic for an offline session that subscribes to it. Kafka
// would refuse the record after the publisher had its PUBACK.
func (n *Node) TooLarge(m *Message) error {
	exact := Room{record: n.maxRecord, route: n.routes.widest(m.Topic), queue: n.sessions.longestMatch(m.Topic)}
	if topic, wire := exact.over(m); topic != "" {
		return n.tooLarge(m, wire, topic)
	}
	return nil
}

// Room bounds the records a publish can make whatever its topic: a
// publish it fits is one whose records Kafka takes, known without
// matching its topic against the routes and sessions. The zero Room fits
// nothing.
type Room struct {
	// record is the largest record Kafka takes, with librdkafka's framing.
	record int
	// route is the most bytes of a record to another node that depend on
	// the node (its name and the shared filters it is picked for); queue
	// is the longest client id of a session queued in Kafka; -1: none.
	route, queue int
}

// Room is what the routes and sessions leave a publish now.
func (n *Node) Room() Room {
	return Room{record: n.maxRecord, route: int(n.routes.reach.Load()), queue: int(n.sessions.longest.Load())}
}

// Fits reports whether Kafka takes every record m can make; false leaves
// the answer to TooLarge.
func (r Room) Fits(m *Message) bool {
	topic, _ := r.over(m)
	return topic == ""
}

// over is the cluster topic of the first record of m larger than
// r.record, and that record's size with librdkafka's framing; "" if there
// is none.
func (r Room) over(m *Message) (topic string, wire int) {
	size := conf.RecordOverhead + encodedLen(m)
	retained, route := -1, -1
	if m.Retain && len(m.Payload) > 0 {
		retained = len(m.Topic)
	}
	if r.route >= 0 {
		route = r.route + 1 + len(m.Origin)
	}
	// What each record adds to m: the retained topic's key is the topic,
	// the queue's the client id, and a record to a node names it and the
	// publisher and carries the shared filters it is picked for.
	for _, rec := range [...]struct {
		topic string
		adds  int
	}{{topicRetained, retained}, {topicQueues, r.queue}, {topicMessages, route}} {
		if rec.adds >= 0 && rec.adds+size > r.record {
			return rec.topic, rec.adds + size
		}
	}
	return "", 0
}

func (n *Node) tooLarge(m *Message, wire int, topic string) error {
	err := fmt.Errorf("%w: %d bytes with librdkafka's framing for cluster topic %s, message.max.bytes is %d",
		ack.ErrTooLarge, wire, n.topic(topic), n.maxRecord)
	if logx.Allowed(&n.lastTooLargeLog) {
		n.log.Warn("publish refused: too large to cross nodes", "client", m.Origin, "topic", m.Topic, "err", err)
	}
	return err
}

// Full reports whether this node announces max_routes filters: a new one
// would be refused.
func (n *Node) Full() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg.MaxRoutes > 0 && len(n.announced) >= n.cfg.MaxRoutes
}

// Subscribed tells the cluster whether this node still has subscribers
// for filter; a change is announced in the routes topic.
func (n *Node) Subscribed(filter string, has bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.announce(filter, has)
}

// announce produces a route or its tombstone when it changes; n.mu held.
func (n *Node) announce(filter string, has bool) {
	if n.announced[filter] == has {
		return
	}
	if has {
		n.announced[filter] = true
	} else {
		delete(n.announced, filter)
	}
	var value []byte
	if has {
		value = []byte{1}
	}
	n.produceState(topicRoutes, n.cfg.Node+"\x00"+filter, value)
}

// Retained shares a retained message (empty payload: its clearing) with
// every node.
func (n *Node) Retained(m *Message) {
	var value []byte
	if len(m.Payload) > 0 {
		value = appendMessage(nil, m)
	}
	n.produceState(topicRetained, m.Topic, value)
}

func (n *Node) produceState(name, key string, value []byte) {
	n.life.RLock()
	defer n.life.RUnlock()
	if n.closed {
		return
	}
	t := n.topic(name)
	err := n.state.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &t, Partition: kafka.PartitionAny},
		Key: []byte(key), Value: value}, nil)
	if err != nil {
		n.log.Error("cluster state not sent", "topic", t, "err", err)
	}
}

// beat announces this node.
func (n *Node) beat(stopped bool) heartbeat {
	hb := heartbeat{Version: n.cfg.Version, Address: n.cfg.Address, Admin: n.cfg.Admin,
		Connections: n.local.Connections(), Started: n.started, Stopped: stopped}
	value, _ := json.Marshal(hb)
	n.produceState(topicNodes, n.cfg.Node, value)
	return hb
}

func (n *Node) heartbeats() {
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	check := time.NewTicker(min(time.Second, n.cfg.HeartbeatInterval))
	defer check.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.beat(false)
		case now := <-check.C:
			n.checkMembers(now)
			n.sweepSessions(now)
			n.sessions.handedOver(now)
		}
	}
}

// followState applies what the state topics receive until Close.
func (n *Node) followState() {
	for n.ctx.Err() == nil {
		switch ev := n.stateIn.Poll(100).(type) {
		case *kafka.Message:
			n.apply(ev, false)
		case kafka.Error:
			n.logKafkaError(ev)
		}
	}
}

// apply takes one record of a state topic; loading, retained messages are
// kept for Start, which applies them once the broker runs.
func (n *Node) apply(msg *kafka.Message, loading bool) {
	key := string(msg.Key)
	switch strings.TrimPrefix(*msg.TopicPartition.Topic, n.cfg.TopicPrefix()) {
	case topicNodes:
		n.heard(key, msg, loading)
	case topicRoutes:
		node, filter, ok := strings.Cut(key, "\x00")
		if ok {
			n.routes.set(node, filter, msg.Value != nil)
		}
	case topicSessions:
		n.applySession(key, msg.Value, loading)
	case topicRetained:
		m := &Message{Topic: key, Retain: true}
		if msg.Value != nil {
			var err error
			if m, err = decodeMessage(msg.Value); err == nil && m.Topic != key {
				err = fmt.Errorf("cluster: retained message for topic %q under key %q", m.Topic, key)
			}
			if err != nil {
				if logx.Allowed(&n.lastErrLog) {
					n.log.Warn("cluster retained message unreadable", "topic", key, "err", err)
				}
				return
			}
		}
		if loading {
			n.retained[key] = m
			return
		}
		n.local.Retain(m)
	}
}

// heard notes a node's heartbeat. One read at start counts from the
// record's time, so that a node long gone is not shown up (the nodes'
// clocks are assumed within a fraction of node_timeout); one read since
// counts from when it arrived, so that a node whose clock is off is not
// shown down while its heartbeats keep coming.
func (n *Node) heard(node string, msg *kafka.Message, loading bool) {
	var hb heartbeat
	if msg.Value == nil || json.Unmarshal(msg.Value, &hb) != nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.members[node]
	if m == nil {
		m = &member{}
		n.members[node] = m
	}
	now := time.Now()
	m.beat, m.last = hb, now
	if loading && msg.Timestamp.Before(now) {
		m.last = msg.Timestamp
	}
	if node == n.cfg.Node && hb.Started.Equal(n.started) {
		n.selfHeard = m.last
	} else if node == n.cfg.Node && !loading && !hb.Stopped {
		n.twin = fmt.Sprintf("another process runs node %s (started %s, address %s): both read its partition and announce its routes; give each node its own [broker] node",
			node, hb.Started.Format(time.RFC3339Nano), hb.Address)
		if logx.Allowed(&n.lastTwinLog) {
			n.log.Error("cluster node name runs twice", "node", node, "other_started", hb.Started, "other_address", hb.Address)
		}
	}
	n.updateMember(node, m, n.reference(now))
}

// checkMembers shows down the nodes silent for node_timeout.
func (n *Node) checkMembers(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ref := n.reference(now)
	for node, m := range n.members {
		n.updateMember(node, m, ref)
	}
}

// reference is the time silences are measured against: this node's own
// last heartbeat read back, once there is one. While Kafka is unreachable
// no heartbeat arrives, this node's included, so no node is shown down
// for it, and publishes keep being routed (and queued) to every node;
// n.mu held.
func (n *Node) reference(now time.Time) time.Time {
	if n.selfHeard.IsZero() {
		return now
	}
	return n.selfHeard
}

// updateMember routes to a node while it is up; n.mu held.
func (n *Node) updateMember(node string, m *member, ref time.Time) {
	up := !m.beat.Stopped && ref.Sub(m.last) < n.cfg.NodeTimeout
	if node == n.cfg.Node {
		up = true
	}
	if up == m.up {
		return
	}
	m.up = up
	if node == n.cfg.Node {
		return
	}
	n.routes.setUp(node, up)
	n.sessions.nodeUp(node, up, time.Now())
	if up {
		n.log.Info("cluster node up", "node", node, "address", m.beat.Address, "routes", n.routes.count(node))
	} else {
		n.log.Warn("cluster node down: no more publishes routed to it", "node", node, "last_heartbeat", m.last,
			"stopped", m.beat.Stopped)
	}
}

// followMessages delivers the publishes sent to this node until ctx ends.
func (n *Node) followMessages(ctx context.Context) {
	for ctx.Err() == nil {
		switch ev := n.msgsIn.Poll(100).(type) {
		case *kafka.Message:
			n.receive(ev)
		case kafka.Error:
			n.logKafkaError(ev)
		}
	}
}

// receive delivers a record of this node's partition of the messages
// topic if it is addressed to this node: its key is the destination node
// and the publisher's client id, split by a NUL.
func (n *Node) receive(msg *kafka.Message) {
	n.reachable.Store(true)
	if to, _, _ := bytes.Cut(msg.Key, []byte{0}); string(to) != n.cfg.Node {
		_, _ = n.msgsIn.StoreMessage(msg)
		return
	}
	m, err := decodeMessage(msg.Value)
	if err != nil {
		n.dropped.Add(1)
		if logx.Allowed(&n.lastDropLog) {
			n.log.Warn("cross-node publish unreadable", "offset", msg.TopicPartition.Offset, "err", err)
		}
	} else if err := n.local.Deliver(m); err != nil {
		n.dropped.Add(1)
		if logx.Allowed(&n.lastDropLog) {
			n.log.Warn("cross-node publish not delivered", "topic", m.Topic, "err", err)
		}
	} else {
		n.in.Add(1)
	}
	_, _ = n.msgsIn.StoreMessage(msg)
}

// reports reads a producer's delivery reports until it closes: a record
// Kafka refused for good is dropped.
func (n *Node) reports(p *kafka.Producer, acked *atomic.Int64) {
	for ev := range p.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			if e.TopicPartition.Error == nil {
				n.reachable.Store(true)
				if acked != nil {
					acked.Add(1)
				}
				continue
			}
			if acked != nil {
				n.dropped.Add(1)
			}
			if logx.Allowed(&n.lastErrLog) {
				n.log.Error("cluster record refused by Kafka", "topic", *e.TopicPartition.Topic, "err", e.TopicPartition.Error)
			}
		case kafka.Error:
			if e.IsFatal() {
				select {
				case n.failed <- p:
				default:
				}
			}
			n.logKafkaError(e)
		}
	}
}

func (n *Node) logKafkaError(err kafka.Error) {
	if err.Code() == kafka.ErrAllBrokersDown {
		n.reachable.Store(false)
	}
	if logx.Allowed(&n.lastErrLog) {
		n.log.Warn("cluster: kafka", "err", err)
	}
}

// Status is the cluster as this node sees it.
type Status struct {
	Name  string       `json:"name"`
	Self  string       `json:"node"`
	Nodes []NodeStatus `json:"nodes"`
	// Routes counts the other nodes' filters publishes are matched against.
	Routes int64 `json:"routes"`
	// MessagesIn were delivered here from other nodes; MessagesOut were
	// sent to other nodes and taken by Kafka; MessagesDropped were not
	// (queue full, refused, unreadable or undeliverable).
	MessagesIn      int64 `json:"messages_in"`
	MessagesOut     int64 `json:"messages_out"`
	MessagesDropped int64 `json:"messages_dropped"`
	// Queued are records waiting for Kafka.
	Queued int `json:"queued"`
	// Sessions are the cluster's sessions; SessionsOffline of them have
	// their messages queued in Kafka; SessionMessagesDropped were not
	// queued, or not resumed (over max_mqueue_len), here.
	Sessions               int   `json:"sessions"`
	SessionsOffline        int64 `json:"sessions_offline"`
	SessionMessagesDropped int64 `json:"session_messages_dropped"`
	// SessionsNotHandedOver were resumed here without their holder's
	// hand-over (it was down or did not answer in time): what was in
	// flight to them there is lost.
	SessionsNotHandedOver int64 `json:"sessions_not_handed_over"`
	// WillsPublished are the wills kept in session records that this
	// node published.
	WillsPublished int64 `json:"wills_published"`
	// SessionReleasesWaited counts the disconnects that found the queue
	// of releases waiting for Kafka full, and waited for room.
	SessionReleasesWaited int64 `json:"session_releases_waited"`
	// Kafka is "connected", or "disconnected" while librdkafka reaches
	// none of the brokers: publishes to other nodes wait in the queue.
	Kafka string `json:"kafka"`
	// Conflict is set once another process heartbeats under this node's
	// name.
	Conflict string `json:"conflict,omitempty"`
}

// NodeStatus is one node of the cluster.
type NodeStatus struct {
	ID            string    `json:"id"`
	Address       string    `json:"address"`
	Admin         string    `json:"admin,omitempty"`
	Version       string    `json:"version"`
	Connections   int64     `json:"connections"`
	Started       time.Time `json:"started"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Status        string    `json:"status"` // up | down
	Routes        int       `json:"routes"`
}

// Status reports the cluster's members and this node's counters.
func (n *Node) Status() Status {
	s := Status{Name: n.cfg.Name, Self: n.cfg.Node, Routes: n.routes.size(), MessagesIn: n.in.Load(),
		MessagesOut: n.out.Load(), MessagesDropped: n.dropped.Load(), Kafka: "connected"}
	n.life.RLock()
	s.Queued = n.state.Len() + n.msgs.Len()
	n.life.RUnlock()
	if !n.reachable.Load() {
		s.Kafka = "disconnected"
	}
	s.Sessions, s.SessionsOffline = n.sessions.count()
	s.SessionMessagesDropped = n.sessionDrops.Load()
	s.SessionsNotHandedOver, s.WillsPublished = n.notHandedOver.Load(), n.willsPublished.Load()
	s.SessionReleasesWaited = n.releasesFull.Load()
	n.mu.Lock()
	s.Conflict = n.twin
	for id, m := range n.members {
		st := "down"
		if m.up {
			st = "up"
		}
		s.Nodes = append(s.Nodes, NodeStatus{ID: id, Address: m.beat.Address, Admin: m.beat.Admin, Version: m.beat.Version,
			Connections: m.beat.Connections, Started: m.beat.Started, LastHeartbeat: m.last, Status: st})
	}
	n.mu.Unlock()
	for i := range s.Nodes {
		s.Nodes[i].Routes = n.routes.count(s.Nodes[i].ID)
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].ID < s.Nodes[j].ID })
	return s
}
