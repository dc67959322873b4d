package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/broker"
	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/producer"
	"github.com/mqkafka/mqkafka/rule"
)

// app is one running mqkafka: the stages wired together.
type app struct {
	cfg     *conf.Config
	log     *slog.Logger
	kafka   *kfake.Cluster
	clients []*producer.Client
	sinks   []*producer.Sink
	broker  *broker.Broker

	memMon *buffer.MemoryMonitor

	ctx    context.Context // ends when the app stops; owns background goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// clientConfig is the librdkafka producer a sink needs. The sink's index is
// part of the client id, so each sink has its own producer.
func clientConfig(cn conf.Connector, s conf.Sink) producer.ClientConfig {
	return producer.ClientConfig{
		Connector:       cn.Name,
		BootstrapHosts:  cn.BootstrapHosts,
		RequiredAcks:    s.RequiredAcks,
		Compression:     s.Compression,
		Linger:          s.MaxLingerTime,
		Node:            cn.Node(),
		SinkIndex:       cn.SinkIndex(s.Name),
		Conn:            producer.ConnectorSettings(cn),
		MetadataTimeout: cn.MetadataRequestTimeout,
		Properties:      cn.Properties,
	}
}

// checkConnectors has librdkafka validate every producer configuration.
func checkConnectors(cfg *conf.Config) []conf.Problem {
	var ps []conf.Problem
	seen := map[string]bool{}
	for i, cn := range cfg.Connectors {
		for _, s := range cfg.Sinks {
			if s.Connector != cn.Name {
				continue
			}
			cc := clientConfig(cn, s)
			key := fmt.Sprint(cc)
			if seen[key] {
				continue
			}
			seen[key] = true
			if err := producer.CheckProperties(cc); err != nil {
				ps = append(ps, cfg.Problemf(fmt.Sprintf("connectors[%d].properties", i), "librdkafka rejects the configuration: %v", err))
				break
			}
		}
	}
	return ps
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

// start brings the stages up in dependency order: Kafka side first, so that
// the broker never accepts a publish no sink is ready to buffer.
func start(cfg *conf.Config, log *slog.Logger) (a *app, err error) {
	a = &app{cfg: cfg, log: log}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			a.closeAll()
		}
	}()
	if cfg.EmbeddedKafka.Enabled {
		if a.kafka, err = startEmbeddedKafka(cfg.EmbeddedKafka, log); err != nil {
			return nil, err
		}
	}
	node := cfg.Broker.Node
	if node == "" {
		node = "mqkafka@" + hostname()
	}
	connectors := map[string]conf.Connector{}
	for _, cn := range cfg.Connectors {
		connectors[cn.Name] = cn
	}
	clients := map[string]*producer.Client{}
	actions := map[string]rule.Action{}
	var rules []*rule.Rule
	for _, s := range cfg.Sinks {
		cn := connectors[s.Connector]
		// concurrent_clients producers per sink; each partition is drained
		// by one of them, so order per partition holds.
		var sinkClients []*producer.Client
		for no := range max(cn.ConcurrentClients, 1) {
			cc := clientConfig(cn, s)
			cc.ClientNo = no
			key := fmt.Sprint(cc)
			client := clients[key]
			if client == nil {
				if client, err = producer.NewClient(cc, log); err != nil {
					return nil, err
				}
				clients[key] = client
				a.clients = append(a.clients, client)
			}
			sinkClients = append(sinkClients, client)
		}
		sink, err := producer.NewSink(s, sinkClients, producer.SinkEnv{
			DataDir: cfg.Broker.DataDir, Log: log, Overloaded: a.memoryMonitor(),
		})
		if err != nil {
			return nil, err
		}
		a.sinks = append(a.sinks, sink)
		actions[conf.ActionName(s.Name)] = sink
		if len(s.MQTTTopicFilters) > 0 {
			r, err := shorthandRule(s)
			if err != nil {
				return nil, err
			}
			rules = append(rules, r)
		}
	}
	for _, r := range cfg.Rules {
		cr, err := rule.Compile(r.ID, r.SQL, r.Actions)
		if err != nil {
			return nil, err
		}
		rules = append(rules, cr)
	}
	engine, err := rule.NewEngine(rules, actions)
	if err != nil {
		return nil, err
	}
	if a.broker, err = broker.New(cfg.Broker, node, engine, log); err != nil {
		return nil, err
	}
	if err := a.broker.Start(); err != nil {
		return nil, err
	}
	log.Info("mqkafka started", "version", buildVersion(), "mqtt", a.broker.Addrs(), "sinks", len(a.sinks), "rules", len(rules))
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.reportStats(a.ctx, cfg.StatsInterval)
	}()
	return a, nil
}

// shorthandRule is the rule RMQTT's `mqtt_topic_filters` on a sink stands for:
// SELECT * FROM those filters, feeding that sink.
func shorthandRule(s conf.Sink) (*rule.Rule, error) {
	from := make([]string, len(s.MQTTTopicFilters))
	for i, f := range s.MQTTTopicFilters {
		from[i] = `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
	}
	return rule.Compile("sink:"+s.Name, "SELECT * FROM "+strings.Join(from, ", "), []string{conf.ActionName(s.Name)})
}

func startEmbeddedKafka(c conf.EmbeddedKafka, log *slog.Logger) (*kfake.Cluster, error) {
	_, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded_kafka.listen %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded_kafka.listen %q: bad port", c.Listen)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DefaultNumPartitions(c.Partitions),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, c.Listen) }),
	}
	if len(c.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(c.Partitions), c.Topics...))
	}
	cl, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	log.Warn("EMBEDDED KAFKA: an in-memory Kafka for trying things out only; everything in it is lost when mqkafka stops",
		"listen", cl.ListenAddrs(), "topics", c.Topics, "partitions", c.Partitions)
	return cl, nil
}

// memoryMonitor starts the system memory sampler the first time a sink
// with memory_overload_protection asks for it.
func (a *app) memoryMonitor() func() bool {
	if a.memMon == nil {
		os := a.cfg.Sysmon.OS
		a.memMon = buffer.NewMemoryMonitor(float64(os.SysmemHighWatermark), os.CheckInterval, a.log)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.memMon.Run(a.ctx)
		}()
	}
	return a.memMon.Overloaded
}

// reportStats logs one line per sink every interval while there is traffic.
func (a *app) reportStats(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := make([]int64, len(a.sinks))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, s := range a.sinks {
			c := &s.Counters
			matched, success := c.Matched.Load(), c.Success.Load()
			if matched+success == last[i] {
				continue
			}
			last[i] = matched + success
			q := s.Queued()
			a.log.Info("sink stats", "sink", s.Name(), "matched", matched, "success", success,
				"failed", c.Failed.Load(), "retried", c.Retried.Load(), "dropped", c.Dropped(),
				"queuing", q.Records-q.Inflight, "inflight", q.Inflight)
		}
	}
}

// stop closes the MQTT side, drains the buffers within shutdown_timeout and
// closes everything else.
func (a *app) stop() error {
	if a.broker != nil {
		_ = a.broker.Close()
		a.broker = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, s := range a.sinks {
		if err := s.Drain(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	a.closeAll()
	return errors.Join(errs...)
}

func (a *app) closeAll() {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if a.broker != nil {
		_ = a.broker.Close()
	}
	for _, s := range a.sinks {
		if err := s.Close(); err != nil {
			a.log.Error("closing sink", "sink", s.Name(), "err", err)
		}
	}
	for _, c := range a.clients {
		c.Close()
	}
	if a.kafka != nil {
		a.kafka.Close()
	}
}
