package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// errNoSource marks a build without the Kafka source ([[sources]]).
var errNoSource = errors.New("source not available in this build")

// source is Kafka → mqkafka's source → MQTT subscribers: records produced
// with librdkafka, read back by MQTT subscribers at the run's QoS.
func (r *runner) source(ctx context.Context, p Params) *Result {
	p.Buffer, p.Fsync, p.Rate, p.HalfRate = "", "", 0, false
	key := ceilingKey(ScenarioKafkaRaw, p) + fmt.Sprintf(" qos=%d subs=%d", p.QoS, r.o.Subscribers)
	if r.once[key] {
		return nil
	}
	r.once[key] = true
	name, tag := r.next("source", p)
	res := newResult(name, ScenarioSource, p)
	defer r.add(res)
	if r.o.Broker != "" {
		res.Skipped = "the source scenario needs the mqkafka the bench starts (not --broker)"
		return res
	}
	err := r.runSource(ctx, name, tag, p, res)
	if errors.Is(err, errNoSource) {
		res.Skipped = err.Error()
		return res
	}
	res.fail(err)
	return res
}

func (r *runner) runSource(ctx context.Context, name string, tag uint32, p Params, res *Result) error {
	k, topic, err := r.startKafkaTopic(ctx, name, tag, p.Partitions)
	if err != nil {
		return err
	}
	defer k.close()
	mqttTopic := fmt.Sprintf("bench/src/%08x", tag)
	mq, err := r.startMQKafka(ctx, name, mqConfig{kafka: k.addr, source: &sourceConfig{kafkaTopic: topic, mqttTopic: mqttTopic, qos: p.QoS}})
	if err != nil {
		if strings.Contains(err.Error(), "source") {
			return fmt.Errorf("%w: %v", errNoSource, firstLine(err.Error()))
		}
		return err
	}
	defer r.stopMQKafka(mq)

	cols := make([]*collector, r.o.Subscribers)
	var subs []*subscriber
	closeSubs := func() {
		for _, s := range subs {
			if err := s.close(); err != nil {
				r.log.Warn("subscriber", "err", err)
			}
		}
	}
	defer closeSubs()
	for i := range cols {
		cols[i] = newCollector(tag)
		s, err := subscribe(ctx, mq.addr, fmt.Sprintf("bench-src-%08x-%d", tag, i), mqttTopic, subscriberQoS, cols[i].recorder())
		if err != nil {
			return err
		}
		subs = append(subs, s)
	}
	// A probe record shows whether this build has a source at all: serve
	// accepts [[sources]] in the config even where nothing consumes them.
	if err := probeSource(ctx, k.addr, topic, tag, p.Size, cols[0]); err != nil {
		return err
	}

	l := &rawLoad{spec: rawSpec{
		addr: k.addr, topic: topic, partitions: p.Partitions, producers: p.Clients, size: p.Size,
		messages: p.Messages, duration: p.Duration, tag: tag, keyPrefix: "bench", linger: p.Linger, drain: r.o.Drain,
	}}
	arrived := func() int64 {
		var n int64
		for _, c := range cols {
			n += c.distinct.Load()
		}
		return n
	}
	m := r.startMeasure(ctx, name, mq, k, false)
	prog := startProgress(ctx, r.o.Progress, name+" "+p.String(), l.sent.Load, l.delivered.Load, arrived)
	lres, lerr := l.run(ctx)
	for _, c := range cols {
		c.waitFor(ctx, lres.sent, idle)
	}
	closeSubs()
	prog.end()
	m.finish(ctx, res, lres.sent*int64(len(cols)))
	res.Sent, res.Acked, res.Refused = lres.sent, lres.delivered, lres.failed
	if d := lres.last.Sub(lres.first).Seconds(); d > 0 {
		res.PublishRate = float64(lres.delivered) / d
	}
	// Every subscriber gets every record: their counts add up.
	all := &hists{}
	var last int64
	for _, c := range cols {
		res.Delivered += c.distinct.Load()
		res.Duplicates += c.dups.Load()
		res.Lost += c.seen.missing(&l.ackSet, lres.ids)
		last = max(last, c.lastNs.Load())
		all.add(c.hists.merged())
	}
	if last > 0 {
		res.Seconds = time.Duration(last - lres.first.UnixNano()).Seconds()
		if res.Seconds > 0 {
			res.Rate = float64(res.Delivered) / res.Seconds
		}
	}
	res.E2E = latencyOf(all.merged())
	res.hist("e2e", all.merged())
	res.Extra = map[string]any{"subscribers": len(cols)}
	return lerr
}

func probeSource(ctx context.Context, addr, topic string, tag uint32, size int, col *collector) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return fmt.Errorf("source probe: %w", err)
	}
	defer cl.Close()
	v := make([]byte, size)
	fillPayload(v, warmTagOf(tag), 0, time.Now().UnixNano())
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: v}).FirstErr(); err != nil {
		return fmt.Errorf("source probe: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if col.foreign.Load() > 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%w: a record produced to Kafka did not reach the MQTT subscriber within 30s", errNoSource)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// recovery buffers a backlog while Kafka is down, restarts mqkafka with
// Kafka back, and times the drain.
func (r *runner) recovery(ctx context.Context, p Params) *Result {
	p.Rate, p.HalfRate = 0, false
	key := fmt.Sprintf("recovery %s %s size=%d parts=%d", p.Buffer, p.Fsync, p.Size, p.Partitions)
	if r.once[key] {
		return nil
	}
	r.once[key] = true
	name, tag := r.next("recovery", p)
	res := newResult(name, ScenarioRecovery, p)
	defer r.add(res)
	switch {
	case r.o.Kafka != "" || r.o.Broker != "":
		res.Skipped = "recovery stops and restarts Kafka and mqkafka: it needs the ones the bench starts"
		return res
	case p.Buffer == "memory":
		res.Skipped = "a memory buffer keeps nothing over a restart, by definition"
		return res
	}
	res.fail(r.runRecovery(ctx, name, tag, p, res))
	return res
}

func (r *runner) runRecovery(ctx context.Context, name string, tag uint32, p Params, res *Result) error {
	k, topic, err := r.startKafkaTopic(ctx, name, tag, p.Partitions)
	if err != nil {
		return err
	}
	defer func() { k.close() }() // k is replaced when Kafka comes back
	n := max(r.o.Backlog/int64(p.Size), 1)
	mq, err := r.startMQKafka(ctx, name, mqConfig{
		kafka: k.addr, topic: topic, buffer: p.Buffer, fsync: p.Fsync, linger: p.Linger,
		partLimit: r.o.Backlog * 2 / int64(p.Partitions), shutdown: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	defer func() { r.stopMQKafka(mq) }()

	// Phase 1: with Kafka up, the sink learns its partitions.
	col := newCollector(tag)
	cons := r.startConsumer(ctx, k.addr, topic, time.Time{}, col)
	err = warmMQTT(ctx, mq.addr, tag, col)
	cons.stop()
	if err != nil {
		return err
	}

	// Phase 2: Kafka down; the backlog goes into the buffer.
	k.close()
	q := p
	q.Messages, q.Duration = n, 0
	l := newLoad(q.loadSpec(mq.addr, tag, r.o.Drain))
	prog := startProgress(ctx, r.o.Progress, name+" backlog (Kafka down)", l.sent.Load, l.acked.Load, nil)
	lres, lerr := l.run(ctx)
	prog.end()
	res.fillLoad(lres)
	if lerr != nil {
		return fmt.Errorf("building the backlog: %w", lerr)
	}

	// The buffering process's peak memory: what holding a backlog costs.
	var backlogRSS int64
	if s, ok := mq.stats(); ok {
		backlogRSS = s.hwm
	}

	// Phase 3: stop mqkafka (it cannot drain), bring Kafka back empty on
	// the same port, start mqkafka and time the drain.
	if err := mq.ch.stop(60 * time.Second); err != nil {
		r.log.Warn("stopping mqkafka with Kafka down", "err", err)
	}
	if k, err = r.startKafka(ctx, name+".2", k.port); err != nil {
		return err
	}
	if err := createTopic(ctx, k.addr, topic, p.Partitions); err != nil {
		return err
	}
	cons = r.startConsumer(ctx, k.addr, topic, time.Time{}, col)
	defer cons.stop()
	t0 := time.Now()
	if err := r.restartMQKafka(ctx, mq, name+".2"); err != nil {
		return err
	}
	started := time.Now()
	m := r.startMeasure(ctx, name, mq, k, true)
	prog = startProgress(ctx, r.o.Progress, name+" drain", func() int64 { return lres.acked }, nil, col.distinct.Load)
	col.waitFor(ctx, lres.acked, idle)
	cons.stop()
	prog.end()
	m.finish(ctx, res, lres.acked)
	// The startup CPU is part of the drain: the new process's whole CPU.
	if s, ok := mq.stats(); ok {
		cpu := s.cpu.Seconds()
		res.CPUSeconds = &cpu
	}
	fillFar(res, col, &l.ackSet, lres.ids, started)
	// Latency from publish to Kafka spans the outage: not a latency.
	res.E2E = nil
	delete(res.Histograms, "e2e")
	last := time.Unix(0, col.lastNs.Load())
	drain := last.Sub(started).Seconds()
	ingest := 0.0
	if d := lres.last.Sub(lres.first).Seconds(); d > 0 {
		ingest = float64(lres.acked) / d
	}
	res.Extra = map[string]any{
		"backlog_records":         lres.acked,
		"backlog_bytes":           lres.acked * int64(p.Size),
		"backlog_mb":              float64(lres.acked*int64(p.Size)) / 1e6,
		"ingest_rate":             ingest,
		"startup_seconds":         started.Sub(t0).Seconds(),
		"drain_seconds":           drain,
		"drain_seconds_from_exec": last.Sub(t0).Seconds(),
		"drain_rate":              float64(res.Delivered) / max(drain, 1e-9),
		"backlog_peak_rss_mb":     float64(backlogRSS) / (1 << 20),
	}
	return nil
}
