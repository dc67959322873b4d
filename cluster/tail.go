package cluster

import (
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/internal/logx"
)

// tails are the sessions resumed here whose queue partitions this node
// keeps reading for a while after the resume: a node that has not read
// the record saying a session is connected here yet still queues for it,
// after the offset the resume read to.
type tails struct {
	mu    sync.Mutex
	parts map[int32]*tailPart
	// dirty says the consumer's assignment is not parts' any more.
	dirty bool
	wake  chan struct{}
}

// tailPart is a queue partition read for sessions resumed here.
type tailPart struct {
	next int64 // the offset to read from
	ids  map[string]*tailed
	// end is when the partition was last read to its end.
	end time.Time
}

// tailed is a session whose queue is read from next for what was queued
// until until.
type tailed struct {
	next  int64
	until time.Time
}

func newTails() *tails {
	return &tails{parts: map[int32]*tailPart{}, wake: make(chan struct{}, 1)}
}

// add reads p for id from offset from until until; a partition already
// read past from is read again from there.
func (t *tails) add(id string, p int32, from int64, until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := t.parts[p]
	if tp == nil {
		tp = &tailPart{next: from, ids: map[string]*tailed{}}
		t.parts[p], t.dirty = tp, true
	} else if from < tp.next {
		tp.next, t.dirty = from, true
	}
	tp.ids[id] = &tailed{next: from, until: until}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// drop stops reading for id and returns the offset from which id's
// records were not delivered, -1 if it was not read.
func (t *tails) drop(id string, p int32) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := t.parts[p]
	if tp == nil || tp.ids[id] == nil {
		return -1
	}
	next := tp.ids[id].next
	delete(tp.ids, id)
	return next
}

// assignment drops the sessions whose partition was read to its end
// after their until (or, Kafka not answering, queueWait later) and the
// partitions no session needs, and returns the partitions to read, from
// where, when they changed.
func (t *tails) assignment(topic *string, now time.Time) ([]kafka.TopicPartition, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, tp := range t.parts {
		for id, s := range tp.ids {
			if tp.end.After(s.until) || now.After(s.until.Add(queueWait)) {
				delete(tp.ids, id)
			}
		}
		if len(tp.ids) == 0 {
			delete(t.parts, p)
			t.dirty = true
		}
	}
	if !t.dirty {
		return nil, false
	}
	t.dirty = false
	out := make([]kafka.TopicPartition, 0, len(t.parts))
	for p, tp := range t.parts {
		out = append(out, kafka.TopicPartition{Topic: topic, Partition: p, Offset: kafka.Offset(tp.next)})
	}
	return out, true
}

// take notes that the record at offset off of p was read and reports
// whether it is for a session read there that has not had it.
func (t *tails) take(p int32, off int64, id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := t.parts[p]
	if tp == nil {
		return false
	}
	tp.next = max(tp.next, off+1)
	s := tp.ids[id]
	if s == nil || off < s.next {
		return false
	}
	s.next = off + 1
	return true
}

// ended notes that p was read to its end at now.
func (t *tails) ended(p int32, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp := t.parts[p]; tp != nil {
		tp.end = now
	}
}

// tailGrace is how long a node reads a resumed session's queue: a node
// queues for the session until it reads the record saying it is
// connected here (one Kafka round trip), or, while it has no route to
// this node for the session's filters yet, for heartbeat_interval more.
func (n *Node) tailGrace() time.Duration { return n.cfg.NodeTimeout }

// followQueues reads the queue partitions of the sessions resumed here
// within their grace, and delivers their records as live messages, until
// Close.
func (n *Node) followQueues() {
	var c *kafka.Consumer
	defer func() {
		if c != nil {
			_ = c.Close()
		}
	}()
	reading := false
	for n.ctx.Err() == nil {
		parts, changed := n.tails.assignment(&n.queuesTopic, time.Now())
		if changed {
			if c == nil {
				cm := n.consumerConfig(topicQueues)
				var err error
				if c, err = kafka.NewConsumer(&cm); err != nil {
					n.log.Error("resumed sessions' queues not followed", "err", err)
					return
				}
				n.goLogs(c.Logs())
			}
			if err := c.Assign(parts); err != nil {
				n.log.Warn("resumed sessions' queues not followed", "err", err)
			}
			reading = len(parts) > 0
		}
		if !reading {
			select {
			case <-n.ctx.Done():
			case <-n.tails.wake:
			}
			continue
		}
		switch ev := c.Poll(100).(type) {
		case *kafka.Message:
			n.tailed(ev)
		case kafka.PartitionEOF:
			n.tails.ended(ev.Partition, time.Now())
		case kafka.Error:
			n.logKafkaError(ev)
		}
	}
}

// tailed delivers a record of a followed queue partition to the session
// it is for, if that session is followed and has not had it.
func (n *Node) tailed(msg *kafka.Message) {
	id := string(msg.Key)
	if !n.tails.take(msg.TopicPartition.Partition, int64(msg.TopicPartition.Offset), id) ||
		len(msg.Value) == 0 || msg.Value[0] != codecVersion {
		return
	}
	m, err := decodeMessage(msg.Value)
	if err == nil {
		err = n.local.DeliverQueued(id, m)
	}
	if err != nil {
		n.sessionDrops.Add(1)
		if logx.Allowed(&n.lastDropLog) {
			n.log.Warn("message queued for a session resumed here not delivered", "client", id, "err", err)
		}
	}
}
