package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/connector"
	"github.com/mqkafka/mqkafka/internal/logx"
)

// ClientConfig selects a librdkafka producer's settings.
type ClientConfig struct {
	Connector    string
	RequiredAcks string // all_isr | leader_only | none
	Compression  string // no_compression | gzip | snappy | lz4 | zstd
	Linger       time.Duration
	// Node, SinkIndex and ClientNo complete the client id (connector.Config.EgressID).
	Node      string
	SinkIndex int
	ClientNo  int
	// Conn is the connector's bootstrap hosts, TLS, SASL, timeout and
	// socket settings and its properties.
	Conn connector.Config
	// MetadataTimeout bounds a metadata request (metadata_request_timeout;
	// librdkafka's metadata.request.timeout.ms is deprecated and unused).
	MetadataTimeout time.Duration
	// MaxInflightBytes is the sink's max_inflight_bytes; librdkafka's own
	// queue is bounded to it (0: 4 GB, for clients of no sink).
	MaxInflightBytes int64
	// MaxBatchAge is the sink's max_batch_age: librdkafka gives up on a
	// record after this long (message.timeout.ms; 0: never).
	MaxBatchAge time.Duration
}

// NewClientConfig is the librdkafka producer sink s of connector cn needs;
// a zero s gives a client of no sink. The sink's index is part of the
// client id, so each sink has its own producer.
func NewClientConfig(cn conf.Connector, s conf.Sink) ClientConfig {
	return ClientConfig{
		Connector:        cn.Name,
		RequiredAcks:     s.RequiredAcks,
		Compression:      s.Compression,
		Linger:           s.MaxLingerTime,
		Node:             cn.Node(),
		SinkIndex:        cn.SinkIndex(s.Name),
		Conn:             connector.Settings(cn),
		MetadataTimeout:  cn.MetadataRequestTimeout,
		MaxInflightBytes: int64(s.MaxInflightBytes),
		MaxBatchAge:      s.MaxBatchAge,
	}
}

func (c ClientConfig) configMap() kafka.ConfigMap {
	acks := map[string]string{"all_isr": "all", "leader_only": "1", "none": "0"}[c.RequiredAcks]
	if acks == "" {
		acks = "all"
	}
	codec := c.Compression
	if codec == "" || codec == "no_compression" {
		codec = "none"
	}
	// The sink bounds what it hands over (max_inflight_bytes) and counts
	// at least the bytes librdkafka counts, for longer, so these limits
	// are a backstop that a sink never reaches.
	kbytes := int64(4 << 20)
	if c.MaxInflightBytes > 0 {
		kbytes = (c.MaxInflightBytes + 1023) / 1024
	}
	own := kafka.ConfigMap{
		"acks":                         acks,
		"enable.idempotence":           acks == "all",
		"compression.type":             codec,
		"linger.ms":                    int(c.Linger / time.Millisecond),
		"queue.buffering.max.messages": 10_000_000,
		"queue.buffering.max.kbytes":   int(kbytes),
		// A record librdkafka gives up on is sent again from the buffer,
		// after records behind it that librdkafka may still deliver; only
		// a record past max_batch_age, dropped instead, may be given up on.
		"message.timeout.ms": int(c.MaxBatchAge / time.Millisecond),
		// Delivery reports wait here for serveEvents; the default (a
		// million) is 16 MB of channel that a long drain cycles through.
		"go.events.channel.size": eventsChannelSize,
		// ProduceChannel is not used; its default is an 8 MB channel.
		"go.produce.channel.size":   1,
		"enable.metrics.push":       false,
		"go.delivery.report.fields": "none",
		"go.logs.channel.enable":    true,
	}
	return c.Conn.ConfigMap(c.Conn.EgressID(c.Connector, c.Node, c.SinkIndex, c.ClientNo), own)
}

// eventsChannelSize is the length of a producer's delivery report channel.
const eventsChannelSize = 16384

// CheckProperties reports whether librdkafka accepts the connector's
// properties, naming the one it rejects.
func CheckProperties(cfg ClientConfig) error {
	cm := cfg.configMap()
	// An unroutable bootstrap keeps the probe from talking to anyone.
	cm["bootstrap.servers"] = "127.0.0.1:1"
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return err
	}
	go func() {
		for range p.Logs() {
		}
	}()
	p.Close()
	return nil
}

// Client is one librdkafka producer of a connector, recreated when it fails
// fatally. Its delivery reports are routed to the batches that produced them.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	mu     sync.RWMutex
	p      *kafka.Producer
	status atomic.Int32 // a connector.Status
	wg     sync.WaitGroup
	closed bool

	lastErrLog atomic.Int64
}

// NewClient creates the producer; it does not wait for Kafka to be reachable.
func NewClient(cfg ClientConfig, log *slog.Logger) (*Client, error) {
	c := &Client{cfg: cfg, log: log.With("connector", cfg.Connector)}
	c.status.Store(int32(connector.Connecting))
	p, err := c.newProducer()
	if err != nil {
		return nil, err
	}
	c.p = p
	return c, nil
}

func (c *Client) newProducer() (*kafka.Producer, error) {
	cm := c.cfg.configMap()
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, fmt.Errorf("connector %s: %w", c.cfg.Connector, err)
	}
	c.wg.Add(2)
	go c.serveEvents(p)
	go c.serveLogs(p)
	return p, nil
}

// Status reports the connection state.
func (c *Client) Status() connector.Status { return connector.Status(c.status.Load()) }

func (c *Client) setStatus(s connector.Status) {
	if old := connector.Status(c.status.Swap(int32(s))); old != s {
		c.log.Info("kafka connector status", "status", s.String(), "was", old.String())
	}
}

// withProducer runs fn with the current producer, held for a whole batch so
// that a batch never straddles a recreated producer.
func (c *Client) withProducer(fn func(p *kafka.Producer) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return errClientClosed
	}
	return fn(c.p)
}

var errClientClosed = errors.New("producer closed")

// serveLogs forwards librdkafka's log to slog. While a broker is
// unreachable librdkafka repeats its error many times a second, so warnings
// and notices are passed on at most once a second per tag.
func (c *Client) serveLogs(p *kafka.Producer) {
	defer c.wg.Done()
	var tags logx.Keyed
	for ev := range p.Logs() {
		if ev.Level > 4 {
			c.log.Debug("librdkafka", "tag", ev.Tag, "msg", ev.Message)
			continue
		}
		if tags.Allowed(ev.Tag) {
			level := slog.LevelInfo
			if ev.Level <= 3 {
				level = slog.LevelWarn
			}
			c.log.Log(context.Background(), level, "librdkafka", "tag", ev.Tag, "msg", ev.Message)
		}
	}
}

// serveEvents drains a producer's events until it is closed; an undrained
// Events channel keeps Flush and Close from ever finishing.
func (c *Client) serveEvents(p *kafka.Producer) {
	defer c.wg.Done()
	for ev := range p.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			m, ok := e.Opaque.(*msgRef)
			if !ok {
				continue
			}
			if e.TopicPartition.Error == nil {
				c.setStatus(connector.Connected)
			}
			m.delivered(e.TopicPartition.Error)
		case kafka.Error:
			c.onError(p, e)
		}
	}
}

func (c *Client) onError(p *kafka.Producer, e kafka.Error) {
	if e.IsFatal() {
		c.log.Error("kafka producer failed fatally; recreating it and re-sending from the buffer", "err", e)
		c.recreate(p)
		return
	}
	if e.Code() == kafka.ErrAllBrokersDown {
		c.setStatus(connector.Connecting)
	}
	if logx.Allowed(&c.lastErrLog) {
		c.log.Warn("kafka client error", "err", e, "code", e.Code().String())
	}
}

// recreate replaces a fatally failed producer. Purging the old one fails its
// outstanding records as retriable, so their partitions rewind and send them
// again through the new producer.
func (c *Client) recreate(old *kafka.Producer) {
	c.mu.Lock()
	if c.closed || c.p != old {
		c.mu.Unlock()
		return
	}
	np, err := c.newProducer()
	if err != nil {
		c.mu.Unlock()
		c.log.Error("recreating kafka producer", "err", err)
		return
	}
	c.p = np
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		retire(old)
	}()
}

// retire purges and closes a producer; its events goroutine delivers the
// purge reports and ends when Close closes the channel.
func retire(p *kafka.Producer) {
	_ = p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
	for i := 0; i < 100 && p.Len() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	p.Close()
}

// TopicInfo is what metadata says of a topic.
type TopicInfo struct {
	Partitions int
	Exists     bool
}

// Metadata asks Kafka about one topic.
func (c *Client) Metadata(ctx context.Context, topic string) (TopicInfo, error) {
	c.mu.RLock()
	p, closed := c.p, c.closed
	c.mu.RUnlock()
	if closed {
		return TopicInfo{}, errClientClosed
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	md, err := p.GetMetadata(&topic, false, int(max(timeout, time.Millisecond)/time.Millisecond))
	if err != nil {
		c.setStatus(connector.Connecting)
		return TopicInfo{}, fmt.Errorf("connector %s: metadata of %q: %w", c.cfg.Connector, topic, err)
	}
	c.setStatus(connector.Connected)
	tm, ok := md.Topics[topic]
	if !ok {
		return TopicInfo{}, nil
	}
	switch tm.Error.Code() {
	case kafka.ErrNoError:
		return TopicInfo{Partitions: len(tm.Partitions), Exists: len(tm.Partitions) > 0}, nil
	case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic, kafka.ErrTopicException:
		return TopicInfo{}, nil
	default:
		return TopicInfo{}, fmt.Errorf("connector %s: metadata of %q: %w", c.cfg.Connector, topic, tm.Error)
	}
}

// Close purges what librdkafka still holds (the buffer keeps those records)
// and closes the producer.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	p := c.p
	c.mu.Unlock()
	retire(p)
	c.wg.Wait()
	c.setStatus(connector.Disconnected)
}
