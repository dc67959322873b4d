package consumer

import (
	"sync"
	"sync/atomic"

	"github.com/mqkafka/mqkafka/internal/tally"
)

// Reason is why a Kafka message was not published to MQTT.
type Reason string

// Drop reasons of a source.
const (
	// ReasonInvalidUTF8: with encoding mode "none", the key, value or a
	// header is not UTF-8 text, and a template or rule needs it as JSON.
	ReasonInvalidUTF8 Reason = "invalid_utf8"
	// ReasonInvalidTopic: the MQTT topic rendered empty, with wildcards or
	// not as UTF-8 text.
	ReasonInvalidTopic Reason = "invalid_topic"
)

// Partition names one Kafka partition.
type Partition struct {
	Topic     string
	Partition int32
}

// Counters are one source's counters, named as EMQX's source metrics.
// Success counts messages handed to the broker and the rules; Failed counts
// messages the broker or a rule action did not take (a message the broker
// did not take is read again).
type Counters struct {
	tally.Counters[Reason]
	Received    atomic.Int64 // messages read from Kafka
	KafkaErrors atomic.Int64 // client errors: Kafka down, topic missing, …
	Rebalances  atomic.Int64 // partition assignments received
	Assigned    atomic.Int32 // partitions assigned now
	// AbandonedCloses counts consumers whose Close did not end within
	// closeTimeout and that were left to librdkafka.
	AbandonedCloses atomic.Int64

	mu  sync.Mutex
	lag map[Partition]int64
}

// Lag returns the consumer lag of each assigned partition whose position
// and high watermark are known: messages in Kafka not yet handed over.
func (c *Counters) Lag() map[Partition]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[Partition]int64, len(c.lag))
	for p, n := range c.lag {
		m[p] = n
	}
	return m
}

func (c *Counters) setLag(lag map[Partition]int64) {
	c.mu.Lock()
	c.lag = lag
	c.mu.Unlock()
}
