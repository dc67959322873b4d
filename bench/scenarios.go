package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/mqkafka/mqkafka/internal/backoff"
)

// idle is how long a run waits for the far end to make progress before it
// counts what has not arrived as lost.
const idle = 15 * time.Second

// measure is the bookkeeping around a run's measured window: CPU of every
// process involved, mqkafka's allocations, and the profile goroutine.
type measure struct {
	mq     *mqSide
	kafka  *kafkaSide
	mq0    procStats
	k0     procStats
	self0  time.Duration
	all0   time.Duration
	mem0   memStats
	memOK  bool
	wg     sync.WaitGroup
	files  []string
	cancel context.CancelFunc
}

func (r *runner) startMeasure(ctx context.Context, name string, mq *mqSide, k *kafkaSide, profile bool) *measure {
	m := &measure{mq: mq, kafka: k, self0: selfCPU(), all0: machineCPU()}
	m.mq0, _ = mq.stats()
	m.k0, _ = k.stats()
	m.mem0, m.memOK = mq.memStats(ctx)
	pctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	if profile && r.o.Profile && mq != nil && mq.ch != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			// A second in, the load is at full speed.
			if backoff.Sleep(pctx, time.Second) {
				m.files = mq.profile(pctx, filepath.Join(r.o.Out, "profiles"), name, r.o.ProfileSeconds)
			}
		}()
	}
	return m
}

// finish fills res with what the window cost; msgs is what it carried.
func (m *measure) finish(ctx context.Context, res *Result, msgs int64) {
	m.wg.Wait()
	m.cancel()
	res.Profiles = m.files
	res.BenchCPUSeconds = (selfCPU() - m.self0).Seconds()
	ours := res.BenchCPUSeconds
	if s, ok := m.mq.stats(); ok {
		cpu := (s.cpu - m.mq0.cpu).Seconds()
		res.CPUSeconds = &cpu
		res.PeakRSSBytes = &s.hwm
		ours += cpu
	}
	if s, ok := m.kafka.stats(); ok {
		cpu := (s.cpu - m.k0.cpu).Seconds()
		res.KafkaCPUSeconds = &cpu
		ours += cpu
	}
	res.OtherCPUSeconds = max((machineCPU()-m.all0).Seconds()-ours, 0)
	if mem, ok := m.mq.memStats(ctx); ok && m.memOK && msgs > 0 {
		a := float64(mem.Mallocs-m.mem0.Mallocs) / float64(msgs)
		b := float64(mem.TotalAlloc-m.mem0.TotalAlloc) / float64(msgs)
		gcs := int64(mem.NumGC - m.mem0.NumGC)
		res.AllocsPerMsg, res.AllocBytesPerMsg, res.GCs = &a, &b, &gcs
	}
}

func (p Params) loadSpec(addr string, tag uint32, drain time.Duration) loadSpec {
	return loadSpec{
		addr: addr, clients: p.Clients, inflight: p.Inflight, qos: byte(p.QoS), size: p.Size,
		messages: p.Messages, duration: p.Duration, rate: p.Rate, tag: tag,
		topic: fmt.Sprintf("bench/%08x", tag), clientID: "bench", drain: drain,
	}
}

// warmMQTT publishes one QoS 1 warm-up message and waits until it reached
// the far end: then the sink knows its partitions, librdkafka is connected
// and the consumer fetches, and none of that is in the measurement.
func warmMQTT(ctx context.Context, addr string, tag uint32, col *collector) error {
	c, err := dialMQTT(ctx, addr, nil, fmt.Sprintf("bench-warm-%08x", tag), 0)
	if err != nil {
		return err
	}
	defer c.disconnect()
	payload := make([]byte, minSize)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		fillPayload(payload, warmTagOf(tag), 0, time.Now().UnixNano())
		if err := c.writePublish(fmt.Sprintf("bench/%08x/warm", tag), 1, 1, payload); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if err := c.flush(); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		for {
			typ, _, _, err := c.readPacket()
			if err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
			if typ == pktPuback {
				break
			}
		}
		wait := time.Now().Add(5 * time.Second)
		for time.Now().Before(wait) && ctx.Err() == nil {
			if col.foreign.Load() > 0 {
				return nil
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return fmt.Errorf("warm-up: nothing arrived at the far end within a minute")
}

// rates fills the result's counts and rates from the publishing side and
// the collector.
func fillFar(res *Result, col *collector, sent *idSet, ids uint64, first time.Time) {
	res.Delivered = col.distinct.Load()
	res.Duplicates = col.dups.Load()
	res.Lost = col.seen.missing(sent, ids)
	if last := col.lastNs.Load(); last > 0 && !first.IsZero() {
		secs := time.Duration(last - first.UnixNano()).Seconds()
		res.Seconds = secs
		if secs > 0 {
			res.Rate = float64(res.Delivered) / secs
		}
	}
	res.E2E = latencyOf(col.hists.merged())
	res.hist("e2e", col.hists.merged())
}

// pipeline is N MQTT clients through mqkafka into Kafka.
func (r *runner) pipeline(ctx context.Context, p Params) *Result {
	key := pipelineKey(p)
	if p.HalfRate {
		full := r.pipelines[key]
		if full == nil {
			q := p
			q.HalfRate = false
			full = r.pipeline(ctx, q)
		}
		if full == nil || full.Rate <= 0 {
			res := newResult("pipeline", ScenarioPipeline, p)
			res.Skipped = "no full-speed rate to halve"
			r.add(res)
			return res
		}
		p.Rate = full.Rate / 2
	} else if p.Rate == 0 {
		if res := r.pipelines[key]; res != nil {
			return res
		}
	}
	kind := "pipeline"
	if r.o.Cold {
		kind = "pipeline-cold"
	}
	name, tag := r.next(kind, p)
	res := newResult(name, ScenarioPipeline, p)
	if p.Rate == 0 {
		r.pipelines[key] = res
	}
	defer r.add(res)
	res.fail(r.runPipeline(ctx, name, tag, p, res))
	return res
}

func (r *runner) runPipeline(ctx context.Context, name string, tag uint32, p Params, res *Result) error {
	k, err := r.startKafka(ctx, name, 0)
	if err != nil {
		return err
	}
	defer k.close()
	topic := fmt.Sprintf("bench-%s-%08x", name, tag)
	var since time.Time
	if r.o.Broker != "" {
		topic, since = r.o.Topic, time.Now()
	} else if err := createTopic(ctx, k.addr, topic, p.Partitions); err != nil {
		return err
	}
	mq, err := r.startMQKafka(ctx, name, mqConfig{
		kafka: k.addr, topic: topic, buffer: p.Buffer, fsync: p.Fsync, linger: p.Linger,
		partLimit: int64(p.Size+64) * max(p.Messages, 1_000_000) / int64(p.Partitions) * 2,
		cold:      r.o.Cold,
	})
	if err != nil {
		return err
	}
	defer r.stopMQKafka(mq)

	col := newCollector(tag)
	cons := r.startConsumer(ctx, k.addr, topic, since, col)
	defer cons.stop()
	if !r.o.Cold {
		if err := warmMQTT(ctx, mq.addr, tag, col); err != nil {
			return err
		}
	}

	m := r.startMeasure(ctx, name, mq, k, true)
	l := newLoad(p.loadSpec(mq.addr, tag, r.o.Drain))
	prog := startProgress(ctx, r.o.Progress, name+" "+p.String(), l.sent.Load, l.acked.Load, col.distinct.Load)
	lres, lerr := l.run(ctx)
	col.waitFor(ctx, lres.acked, idle)
	cons.stop()
	prog.end()
	m.finish(ctx, res, lres.acked)

	res.fillLoad(lres)
	fillFar(res, col, &l.ackSet, lres.ids, lres.first)
	return lerr
}

// ceilingKafka is kafka-raw: librdkafka straight into the same Kafka.
func (r *runner) ceilingKafka(ctx context.Context, p Params) *Result {
	p.QoS = 1
	return r.ceiling(ctx, ScenarioKafkaRaw, p, r.kafkaRaw, r.runKafkaRaw)
}

// ceiling runs the ceiling scenario at full speed, once for each
// ceilingKey: done holds the results so far.
func (r *runner) ceiling(ctx context.Context, scenario string, p Params, done map[string]*Result, run func(context.Context, string, uint32, Params, *Result) error) *Result {
	key := ceilingKey(scenario, p)
	if res := done[key]; res != nil {
		return res
	}
	p.Buffer, p.Rate, p.HalfRate = "", 0, false
	name, tag := r.next(scenario, p)
	res := newResult(name, scenario, p)
	done[key] = res
	defer r.add(res)
	res.fail(run(ctx, name, tag, p, res))
	return res
}

func (r *runner) runKafkaRaw(ctx context.Context, name string, tag uint32, p Params, res *Result) error {
	k, topic, err := r.startKafkaTopic(ctx, name, tag, p.Partitions)
	if err != nil {
		return err
	}
	defer k.close()
	col := newCollector(tag)
	cons := r.startConsumer(ctx, k.addr, topic, time.Time{}, col)
	defer cons.stop()
	l := &rawLoad{spec: rawSpec{
		addr: k.addr, topic: topic, partitions: p.Partitions, producers: p.Clients, size: p.Size,
		messages: p.Messages, duration: p.Duration, tag: tag, keyPrefix: "bench", linger: p.Linger, drain: r.o.Drain,
	}}
	m := r.startMeasure(ctx, name, nil, k, false)
	prog := startProgress(ctx, r.o.Progress, name+" "+p.String(), l.sent.Load, l.delivered.Load, col.distinct.Load)
	lres, lerr := l.run(ctx)
	// The warm-up record went through before the clock started; the
	// consumer has it too once it fetches at all.
	col.waitFor(ctx, lres.sent, idle)
	cons.stop()
	prog.end()
	m.finish(ctx, res, lres.sent)
	rdk := lres.rdkCPU.Seconds()
	res.CPUSeconds = &rdk
	res.Sent, res.Acked, res.Refused = lres.sent, lres.delivered, lres.failed
	if d := lres.last.Sub(lres.first).Seconds(); d > 0 {
		res.PublishRate = float64(lres.delivered) / d
	}
	fillFar(res, col, &l.ackSet, lres.ids, lres.first)
	return lerr
}

// ceilingBroker is broker-raw: the same MQTT load through mqkafka's broker,
// with no rule and no Kafka, to one subscriber.
func (r *runner) ceilingBroker(ctx context.Context, p Params) *Result {
	return r.ceiling(ctx, ScenarioBrokerRaw, p, r.brokerRaw, r.runBrokerRaw)
}

func (r *runner) runBrokerRaw(ctx context.Context, name string, tag uint32, p Params, res *Result) error {
	mq, err := r.startMQKafka(ctx, name, mqConfig{})
	if err != nil {
		return err
	}
	defer r.stopMQKafka(mq)
	return r.toSubscriber(ctx, name, tag, p, p.loadSpec(mq.addr, tag, r.o.Drain), mq.addr, mq, nil, res)
}

// toSubscriber runs spec's load (on spec.addr) to one subscriber on
// subAddr and fills res; the CPU measured is mq's and k's.
func (r *runner) toSubscriber(ctx context.Context, name string, tag uint32, p Params, spec loadSpec, subAddr string,
	mq *mqSide, k *kafkaSide, res *Result) error {
	col := newCollector(tag)
	sub, err := subscribe(ctx, subAddr, fmt.Sprintf("bench-sub-%08x", tag), spec.topic+"/#", subscriberQoS, col.recorder())
	if err != nil {
		return err
	}
	defer sub.close()
	// Across nodes, this also waits for the subscriber's route to arrive.
	if err := warmMQTT(ctx, spec.addr, tag, col); err != nil {
		return err
	}
	m := r.startMeasure(ctx, name, mq, k, false)
	l := newLoad(spec)
	prog := startProgress(ctx, r.o.Progress, name+" "+p.String(), l.sent.Load, l.acked.Load, col.distinct.Load)
	lres, lerr := l.run(ctx)
	col.waitFor(ctx, lres.acked, idle)
	if err := sub.close(); err != nil {
		r.log.Warn("subscriber", "err", err)
	}
	prog.end()
	m.finish(ctx, res, lres.acked)
	res.fillLoad(lres)
	fillFar(res, col, &l.ackSet, lres.ids, lres.first)
	return lerr
}
