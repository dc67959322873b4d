// Package consumer is the Kafka source: a consumer group per [[sources]]
// entry, whose messages are published into the MQTT broker through topic
// mappings and run through the rules that read the source. An offset is
// stored for commit only once its message was handed to the broker.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/connector"
	"github.com/mqkafka/mqkafka/internal/backoff"
	"github.com/mqkafka/mqkafka/internal/logx"
	"github.com/mqkafka/mqkafka/rule"
)

// Broker takes the messages a source publishes.
type Broker interface {
	// Publish hands a message to the broker; it returns once the message
	// is routed to the subscribers' queues and offline sessions. An error
	// wrapping conf.ErrInvalidTopic is final: the message is dropped.
	Publish(ctx context.Context, topic string, payload []byte, retain bool, qos byte, userProps [][2]string) error
	// WaitRoom blocks while subscribers cannot keep up.
	WaitRoom(ctx context.Context) error
}

// RuleActions is a rule that reads the source, with its actions resolved.
type RuleActions struct {
	Rule    *rule.Rule
	Actions []rule.Action
}

// Env is what a source needs from the rest of the process.
type Env struct {
	Broker Broker
	// Rules are the rules whose FROM names this source.
	Rules []RuleActions
	// Node is the broker's node name, part of the Kafka client id.
	Node string
	Log  *slog.Logger
}

type mapping struct {
	topic   *rule.Template
	static  string // the topic when the template has no placeholders
	payload *rule.Template
	qos     byte
	retain  bool
}

// Source is one [[sources]] entry: a librdkafka consumer in the source's
// group and the goroutine that polls it.
type Source struct {
	// Counters are the source's metrics.
	Counters Counters

	cfg              conf.Source
	cm               kafka.ConfigMap
	env              Env
	log              *slog.Logger
	topics           []string
	maps             map[string]*mapping
	keyB64, valueB64 bool
	status           atomic.Int32

	c      *kafka.Consumer // owned by the poll goroutine once started
	logsWG sync.WaitGroup  // the log forwarders of c and its predecessors
	// logsQuit ends c's log forwarder when c is abandoned.
	logsQuit chan struct{}
	// closeWait bounds the wait for librdkafka's Close (closeTimeout).
	closeWait time.Duration
	// closing holds the consumers inside Close, whose rebalance callback
	// must not touch the source: an abandoned one runs beside the rest.
	closing sync.Map
	started bool
	cancel  context.CancelFunc
	done    chan struct{}

	// Poll goroutine state; the rebalance callback runs inside Poll, on it too.
	rec     message
	pending map[Partition]kafka.TopicPartition
	stores  []kafka.TopicPartition
	// sinceFlush counts the messages polled since the last flushStores.
	sinceFlush int
	topicBuf   []byte
	colsBuf    []byte

	lastErrLog  atomic.Int64
	lastDropLog atomic.Int64
}

// New builds a source and its Kafka consumer; nothing is read before Start.
func New(cfg conf.Source, cn conf.Connector, env Env) (*Source, error) {
	s := &Source{
		cfg:      cfg,
		env:      env,
		log:      env.Log.With("source", cfg.Name),
		topics:   cfg.Topics(),
		maps:     map[string]*mapping{},
		keyB64:   cfg.KeyEncodingMode == "base64",
		valueB64: cfg.ValueEncodingMode == "base64",
		pending:  map[Partition]kafka.TopicPartition{},
		done:     make(chan struct{}),

		closeWait: closeTimeout,
	}
	s.status.Store(int32(connector.Connecting))
	for _, m := range cfg.TopicMapping {
		mp := &mapping{qos: byte(m.QoS), retain: m.Retain}
		var err error
		if mp.topic, err = rule.CompileTemplate(m.MQTTTopic); err != nil {
			return nil, fmt.Errorf("source %s: %w", cfg.Name, err)
		}
		if mp.topic.IsStatic() {
			mp.static = m.MQTTTopic
		}
		if mp.payload, err = rule.CompileTemplate(m.PayloadTemplate); err != nil {
			return nil, fmt.Errorf("source %s: %w", cfg.Name, err)
		}
		s.maps[m.KafkaTopic] = mp
	}
	s.cm = clientConfig(cfg, cn, env.Node)
	var err error
	if s.c, err = s.newConsumer(); err != nil {
		return nil, err
	}
	return s, nil
}

// Name is the source's name.
func (s *Source) Name() string { return s.cfg.Name }

// Status reports whether the consumer has reached Kafka.
func (s *Source) Status() connector.Status { return connector.Status(s.status.Load()) }

func (s *Source) setStatus(st connector.Status) {
	if old := connector.Status(s.status.Swap(int32(st))); old != st {
		s.log.Info("kafka source status", "status", st.String(), "was", old.String())
	}
}

// clientConfig maps a source and its connector to librdkafka: the
// connector's TLS, SASL and socket settings as the sinks get them, the
// consumer's own settings, then [connectors.properties] over everything.
func clientConfig(s conf.Source, cn conf.Connector, node string) kafka.ConfigMap {
	cc := connector.Settings(cn)
	return cc.ConfigMap(cc.IngressID(cn.Name, node, s.Name), kafka.ConfigMap{
		"group.id":          s.Group(),
		"auto.offset.reset": s.OffsetResetPolicy,
		// librdkafka commits in the background, but only offsets stored
		// with StoreOffsets, which happens once the broker has the message.
		// The default auto store would also store what Close() polls and
		// throws away.
		"enable.auto.commit":        true,
		"auto.commit.interval.ms":   int(s.OffsetCommitInterval / time.Millisecond),
		"enable.auto.offset.store":  false,
		"max.partition.fetch.bytes": int(s.MaxBatchBytes),
		"fetch.wait.max.ms":         int(s.MaxWaitTime / time.Millisecond),
		"enable.partition.eof":      false,
		// A subscribed topic that does not exist yet is found at the next
		// refresh: librdkafka's 5 minutes would leave it unread that long.
		"topic.metadata.refresh.interval.ms": 10000,
		"enable.metrics.push":                false,
		"go.logs.channel.enable":             true,
	})
}

func (s *Source) newConsumer() (*kafka.Consumer, error) {
	cm := kafka.ConfigMap{}
	for k, v := range s.cm {
		cm[k] = v
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, fmt.Errorf("source %s: kafka consumer: %w", s.cfg.Name, err)
	}
	s.logsQuit = make(chan struct{})
	s.logsWG.Add(1)
	go s.serveLogs(c, s.logsQuit)
	return c, nil
}

// serveLogs forwards librdkafka's log until the consumer is closed or
// abandoned (quit). Close stops librdkafka's log forwarding as it begins,
// so nothing is lost that would have been forwarded.
func (s *Source) serveLogs(c *kafka.Consumer, quit <-chan struct{}) {
	defer s.logsWG.Done()
	for {
		var ev kafka.LogEvent
		var ok bool
		select {
		case ev, ok = <-c.Logs():
		case <-quit:
			return
		}
		if !ok {
			return
		}
		switch {
		case ev.Level <= 3:
			s.log.Warn("librdkafka", "tag", ev.Tag, "msg", ev.Message)
		case ev.Level <= 5:
			s.log.Info("librdkafka", "tag", ev.Tag, "msg", ev.Message)
		default:
			s.log.Debug("librdkafka", "tag", ev.Tag, "msg", ev.Message)
		}
	}
}

// Start runs the source until Stop: after start_delay it joins the group
// and publishes what it reads.
func (s *Source) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.started = cancel, true
	go s.run(ctx)
}

// Stop stops reading, stores and commits the offsets of every message
// handed to the broker, and leaves the group. The broker must still be
// running. It gives up waiting when ctx ends; the source's own goroutines
// end within closeTimeout regardless (see closeConsumer).
func (s *Source) Stop(ctx context.Context) error {
	if !s.started {
		s.started = true
		close(s.done)
		s.closeConsumer()
		s.logsWG.Wait()
		return nil
	}
	s.cancel()
	select {
	case <-s.done:
		s.logsWG.Wait()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("source %s: did not stop in time: %w", s.cfg.Name, ctx.Err())
	}
}

func (s *Source) run(ctx context.Context) {
	defer close(s.done)
	defer s.closeConsumer()
	if !backoff.Sleep(ctx, s.cfg.StartDelay) {
		return
	}
	for {
		err := s.consume(ctx)
		if ctx.Err() != nil {
			return
		}
		// Only a fatal client error ends consume early: start over with a
		// new consumer, from the committed offsets.
		s.log.Error("kafka source failed; recreating its consumer", "err", err)
		s.closeConsumer()
		for s.c == nil {
			if !backoff.Sleep(ctx, time.Second) {
				return
			}
			if s.c, err = s.newConsumer(); err != nil {
				s.log.Error("recreating kafka consumer", "err", err)
			}
		}
	}
}

// storeEvery bounds how many handed-over messages wait for one StoreOffsets
// call, which is one cgo call for all of them.
const storeEvery = 512

// consume polls until ctx ends (nil) or the client fails fatally.
func (s *Source) consume(ctx context.Context) error {
	if err := s.c.SubscribeTopics(s.topics, s.rebalance); err != nil {
		return fmt.Errorf("subscribe %v: %w", s.topics, err)
	}
	s.log.Info("kafka source consuming", "topics", s.topics, "group", s.cfg.Group())
	nextLag := time.Now().Add(time.Second)
	timeout := 100
	for ctx.Err() == nil {
		ev := s.c.Poll(timeout)
		switch e := ev.(type) {
		case nil:
			s.flushStores()
			timeout = 100
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				s.kafkaError(e.TopicPartition.Error)
				continue
			}
			timeout = 0
			if err := s.handle(ctx, e); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.retry(ctx, e, err)
			}
			if s.sinceFlush++; s.sinceFlush >= storeEvery {
				s.flushStores()
			}
		case kafka.Error:
			if e.IsFatal() {
				return e
			}
			s.kafkaError(e)
		case kafka.OffsetsCommitted:
			if e.Error != nil {
				s.kafkaError(e.Error)
			}
		}
		if now := time.Now(); now.After(nextLag) {
			s.updateLag()
			nextLag = now.Add(time.Second)
		}
	}
	return nil
}

// handle hands one message to the broker and the rules. An error means the
// broker did not take it: its offset is not stored.
func (s *Source) handle(ctx context.Context, m *kafka.Message) error {
	s.Counters.Received.Add(1)
	s.setStatus(connector.Connected)
	if err := s.env.Broker.WaitRoom(ctx); err != nil {
		return err
	}
	r := &s.rec
	r.reset(m, s.keyB64, s.valueB64)
	ok := true
	if mp := s.maps[r.topic]; mp != nil {
		published, err := s.publish(ctx, mp, m)
		if err != nil {
			s.Counters.Failed.Add(1)
			return err
		}
		ok = published
	}
	if len(s.env.Rules) > 0 {
		s.runRules(ctx)
	}
	if ok {
		s.Counters.Success.Add(1)
	}
	s.store(m)
	return nil
}

// publish renders a message through its topic mapping and publishes it;
// false means it was dropped (counted), which is final.
func (s *Source) publish(ctx context.Context, mp *mapping, m *kafka.Message) (bool, error) {
	r := &s.rec
	topic := mp.static
	if topic == "" {
		s.topicBuf = mp.topic.Render(s.topicBuf[:0], r)
		topic = string(s.topicBuf)
	}
	payload := mp.payload.Render(make([]byte, 0, len(r.value)+len(r.key)+160), r)
	if r.badUTF8 {
		s.drop(ReasonInvalidUTF8, topic, errors.New("key, value or a header is not UTF-8 text; use key_encoding_mode/value_encoding_mode = \"base64\" or a template without ${.}"))
		return false, nil
	}
	if err := conf.ValidMQTTTopic(topic); err != nil {
		s.drop(ReasonInvalidTopic, topic, err)
		return false, nil
	}
	var props [][2]string
	if s.cfg.HeadersAsUserProperties && len(m.Headers) > 0 {
		props = make([][2]string, len(m.Headers))
		for i, h := range m.Headers {
			// MQTT strings are UTF-8; a binary header cannot travel as it is.
			props[i] = [2]string{strings.ToValidUTF8(h.Key, "\uFFFD"), strings.ToValidUTF8(string(h.Value), "\uFFFD")}
		}
	}
	if err := s.env.Broker.Publish(ctx, topic, payload, mp.retain, mp.qos, props); err != nil {
		if errors.Is(err, conf.ErrInvalidTopic) {
			s.drop(ReasonInvalidTopic, topic, err)
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// runRules runs the message through every rule reading the source, as
// EMQX's $bridges/kafka_consumer:<name> events. A rule or action that
// fails is counted and logged; it does not hold the message back.
func (s *Source) runRules(ctx context.Context) {
	r := &s.rec
	r.badUTF8 = false
	s.colsBuf = r.AppendJSON(s.colsBuf[:0])
	now := time.Now().UnixMilli()
	ev := &rule.Event{
		Topic:             r.topic,
		Columns:           string(s.colsBuf),
		Timestamp:         now,
		PublishReceivedAt: now,
		Node:              s.env.Node,
	}
	for _, ra := range s.env.Rules {
		rl := ra.Rule
		rl.Metrics.Matched.Add(1)
		if r.badUTF8 {
			rl.Metrics.Failed.Add(1)
			s.drop(ReasonInvalidUTF8, "", fmt.Errorf("rule %s: key, value or a header is not UTF-8 text; use key_encoding_mode/value_encoding_mode = \"base64\"", rl.ID))
			continue
		}
		rec, ok, err := rl.Eval(ev)
		if err != nil {
			rl.Metrics.Failed.Add(1)
			s.logRate(&s.lastDropLog, "rule skipped a Kafka message", "rule", rl.ID, "reason", rule.ReasonRenderFailed, "err", err)
			continue
		}
		if !ok {
			rl.Metrics.NoResult.Add(1)
			continue
		}
		rl.Metrics.Passed.Add(1)
		for _, a := range ra.Actions {
			if err := a.Enqueue(ctx, ack.InCall(), rec); err != nil {
				s.Counters.Failed.Add(1)
				s.logRate(&s.lastDropLog, "a rule action did not take a Kafka message", "rule", rl.ID, "err", err)
			}
		}
	}
}

func (s *Source) drop(reason Reason, topic string, err error) {
	s.Counters.Drop(reason, 1)
	s.logRate(&s.lastDropLog, "kafka message dropped", "reason", string(reason), "mqtt_topic", topic,
		"kafka_topic", s.rec.topic, "partition", s.rec.m.TopicPartition.Partition, "offset", int64(s.rec.m.TopicPartition.Offset),
		"err", err, "dropped_total", s.Counters.DroppedTotal())
}

// logRate logs at most once a second per clock, so that a stream of bad
// messages cannot flood the log.
func (s *Source) logRate(clock *atomic.Int64, msg string, args ...any) {
	if logx.Allowed(clock) {
		s.log.Warn(msg, args...)
	}
}

func (s *Source) kafkaError(err error) {
	s.Counters.KafkaErrors.Add(1)
	var ke kafka.Error
	if errors.As(err, &ke) && (ke.Code() == kafka.ErrAllBrokersDown || ke.Code() == kafka.ErrTransport) {
		s.setStatus(connector.Connecting)
	}
	s.logRate(&s.lastErrLog, "kafka source error", "err", err, "errors_total", s.Counters.KafkaErrors.Load())
}

// store notes m as handed over; flushStores passes it to librdkafka.
func (s *Source) store(m *kafka.Message) {
	tp := m.TopicPartition
	tp.Offset++
	tp.Error = nil
	s.pending[Partition{Topic: *tp.Topic, Partition: tp.Partition}] = tp
}

func (s *Source) flushStores() {
	s.sinceFlush = 0
	if len(s.pending) == 0 || s.c == nil {
		return
	}
	s.stores = s.stores[:0]
	for _, tp := range s.pending {
		s.stores = append(s.stores, tp)
	}
	clear(s.pending)
	if _, err := s.c.StoreOffsets(s.stores); err != nil {
		// Only a partition no longer assigned refuses; its new owner
		// starts from the last commit and reads those messages again.
		s.log.Debug("storing offsets", "err", err)
	}
}

// retry rewinds m's partition to m after the broker did not take it.
func (s *Source) retry(ctx context.Context, m *kafka.Message, err error) {
	s.logRate(&s.lastErrLog, "the broker did not take a Kafka message; reading it again", "err", err,
		"kafka_topic", *m.TopicPartition.Topic, "partition", m.TopicPartition.Partition, "offset", int64(m.TopicPartition.Offset))
	s.flushStores()
	tp := m.TopicPartition
	tp.Error = nil
	if _, err := s.c.SeekPartitions([]kafka.TopicPartition{tp}); err != nil {
		s.log.Warn("seek after a failed hand-over", "err", err)
	}
	backoff.Sleep(ctx, time.Second)
}

// rebalance runs inside Poll. Before partitions go, every message handed
// over is stored, and librdkafka commits it as it removes them, so that
// their next owner starts right after them.
func (s *Source) rebalance(c *kafka.Consumer, ev kafka.Event) error {
	// During Close, the poll loop has already stored, and closeConsumer
	// resets the counters; an abandoned Close may still get here.
	if _, closing := s.closing.Load(c); closing {
		return nil
	}
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		s.Counters.Rebalances.Add(1)
		s.Counters.Assigned.Add(int32(len(e.Partitions)))
		s.setStatus(connector.Connected)
		s.log.Info("kafka partitions assigned", "partitions", partitionNames(e.Partitions))
	case kafka.RevokedPartitions:
		s.Counters.Assigned.Add(-int32(len(e.Partitions)))
		// librdkafka commits the stored offsets of the partitions it
		// removes (enable.auto.commit), asynchronously: a synchronous
		// Commit here would hang the poll loop while the coordinator is away.
		s.flushStores()
		s.log.Info("kafka partitions revoked", "partitions", partitionNames(e.Partitions), "lost", c.AssignmentLost())
		s.Counters.setLag(nil)
	}
	return nil
}

func partitionNames(tps []kafka.TopicPartition) []string {
	out := make([]string, len(tps))
	for i, tp := range tps {
		out[i] = fmt.Sprintf("%s/%d", *tp.Topic, tp.Partition)
	}
	return out
}

// updateLag computes each assigned partition's lag from librdkafka's
// cached high watermark and the position after the last message handed over.
func (s *Source) updateLag() {
	parts, err := s.c.Assignment()
	if err != nil || len(parts) == 0 {
		s.Counters.setLag(nil)
		return
	}
	pos, err := s.c.Position(parts)
	if err != nil {
		return
	}
	lag := make(map[Partition]int64, len(pos))
	for _, p := range pos {
		if p.Offset < 0 {
			continue
		}
		_, high, err := s.c.GetWatermarkOffsets(*p.Topic, p.Partition)
		if err != nil || high < 0 {
			continue
		}
		lag[Partition{Topic: *p.Topic, Partition: p.Partition}] = max(high-int64(p.Offset), 0)
	}
	s.Counters.setLag(lag)
}

// closeTimeout bounds closeConsumer's wait for librdkafka's Close.
const closeTimeout = 10 * time.Second

// closeConsumer stores what was handed over and closes the consumer, which
// commits the stored offsets as it leaves the group (enable.auto.commit).
// Close polls and discards messages itself; with automatic offset storing
// off, none of those is stored or committed.
//
// Close waits for the final commit, the LeaveGroup and the partitions to
// stop, and it has no timeout of its own: with a coordinator that stops
// answering, or under some broker-down races, it can poll forever. After
// closeWait the consumer is abandoned (logged, counted in
// Counters.AbandonedCloses): its Close goroutine keeps running inside
// librdkafka until that returns, if ever, touching nothing of the source
// but the closing set and the atomic counters; its log forwarder ends now.
// The offsets it did not commit are read again by the group's next owner.
func (s *Source) closeConsumer() {
	if s.c == nil {
		return
	}
	s.flushStores()
	c, quit := s.c, s.logsQuit
	s.c, s.logsQuit = nil, nil
	s.closing.Store(c, true)
	closed := make(chan error, 1)
	go func() {
		err := c.Close()
		s.closing.Delete(c)
		closed <- err
	}()
	t := time.NewTimer(s.closeWait)
	defer t.Stop()
	select {
	case err := <-closed:
		if err != nil {
			s.log.Warn("closing kafka consumer", "err", err)
		}
	case <-t.C:
		close(quit)
		s.Counters.AbandonedCloses.Add(1)
		s.log.Error("kafka consumer did not close in time; abandoned it, its last offsets may be read again",
			"after", s.closeWait, "abandoned_total", s.Counters.AbandonedCloses.Load())
	}
	s.Counters.setLag(nil)
	s.Counters.Assigned.Store(0)
}
