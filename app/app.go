// Package app runs one mqkafka from a conf.Config: the Kafka connectors,
// sinks and sources, the rules, the MQTT broker and the admin listener;
// it reconfigures them at run time and stops and drains them.
package app

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

	"github.com/mqkafka/mqkafka/admin"
	"github.com/mqkafka/mqkafka/broker"
	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/cluster"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/producer"
	"github.com/mqkafka/mqkafka/rule"
)

// App is one running mqkafka: the stages wired together.
type App struct {
	log     *slog.Logger
	version string
	kafka   *kfake.Cluster
	broker  *broker.Broker
	admin   *admin.Server
	// cluster is this node's membership of [cluster], nil without one.
	cluster *cluster.Node
	node    string
	started time.Time

	// cfgMu guards cfg and sinks, which reconfigure replaces; changeMu
	// serializes run-time changes and their overlay.
	cfgMu    sync.Mutex
	cfg      *conf.Config
	sinks    []*sinkRun
	changeMu sync.Mutex
	cfgPath  string
	overlay  *conf.Overlay
	engine   enginePublisher

	memMon *buffer.MemoryMonitor
	// readCache is [buffer] read_cache, shared by every sink's disk queues;
	// it is sized at start (the key takes effect at the next restart).
	readCache *buffer.CacheBudget
	// sources is the Kafka → MQTT half (source.go).
	sources *sourceSet

	ctx    context.Context // ends when the app stops; owns background goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup
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
			cc := producer.NewClientConfig(cn, s)
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

// Start brings the stages up in dependency order: Kafka side first, so that
// the broker never accepts a publish no sink is ready to buffer. cfgPath is
// the file Reload re-reads and API changes are merged with; version is
// what the log and the admin API report.
func Start(cfgPath string, cfg *conf.Config, version string, log *slog.Logger) (*App, error) {
	a := &App{cfg: cfg, log: log, version: version, cfgPath: cfgPath, started: time.Now(),
		readCache: buffer.NewCacheBudget(int64(cfg.Buffer.ReadCache))}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if err := a.start(); err != nil {
		a.closeAll()
		return nil, err
	}
	return a, nil
}

func (a *App) start() (err error) {
	cfg, log := a.cfg, a.log
	if a.overlay, err = conf.LoadOverlay(conf.OverlayPath(cfg.Broker.DataDir)); err != nil {
		return err
	}
	if cfg.EmbeddedKafka.Enabled {
		if a.kafka, err = startEmbeddedKafka(cfg.EmbeddedKafka, log); err != nil {
			return err
		}
	}
	a.node = cfg.Broker.Node
	if a.node == "" {
		a.node = "mqkafka@" + hostname()
	}
	connectors := map[string]conf.Connector{}
	for _, cn := range cfg.Connectors {
		connectors[cn.Name] = cn
	}
	for _, s := range cfg.Sinks {
		sr, err := a.buildSink(s, connectors[s.Connector])
		if err != nil {
			return err
		}
		a.sinks = append(a.sinks, sr)
	}
	a.waitPartitions()
	engine, err := a.buildEngine(cfg, a.node)
	if err != nil {
		return err
	}
	a.engine.e.Store(engine)
	if a.broker, err = broker.New(cfg.Broker, a.node, &a.engine, log); err != nil {
		return err
	}
	if cfg.Cluster != nil {
		if err := a.joinCluster(); err != nil {
			return err
		}
	}
	if err := a.broker.Start(); err != nil {
		return err
	}
	if a.cluster != nil {
		if err := a.cluster.Start(a.broker); err != nil {
			return err
		}
	}
	if err := a.startSources(); err != nil {
		return err
	}
	if cfg.Admin.Listen != "" {
		if a.admin, err = admin.New(cfg.Admin.Listen, string(cfg.Admin.Token), a, log); err != nil {
			return err
		}
		a.admin.Start()
	}
	log.Info("mqkafka started", "version", a.version, "mqtt", a.broker.Addrs(), "admin", a.adminAddr(),
		"sinks", len(a.sinks), "rules", len(engine.Rules()))
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		a.reportStats(a.ctx, cfg.StatsInterval)
	}()
	go func() {
		defer a.wg.Done()
		a.checkHealth(a.ctx)
	}()
	return nil
}

// partitionWait bounds how long a start waits for the sinks to learn their
// topics' partitions: Kafka answers within milliseconds when it is up; when
// it is down the broker starts anyway and the records wait in holding.
const partitionWait = 2 * time.Second

// waitPartitions lets the sinks learn their partitions before the listeners
// open, so that the first publishes go straight to their partition queues
// instead of through the slower holding queue.
func (a *App) waitPartitions() {
	ctx, cancel := context.WithTimeout(a.ctx, partitionWait)
	defer cancel()
	for _, sr := range a.sinks {
		if !sr.sink.WaitPartitions(ctx) {
			a.log.Warn("starting before Kafka told every topic's partitions; records wait in the holding queue until it does",
				"sink", sr.cfg.Name, "waited", partitionWait)
		}
	}
}

func (a *App) adminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr()
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
func (a *App) memoryMonitor() func() bool {
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
func (a *App) reportStats(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := map[string]int64{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range a.Snapshot().Sinks {
			c := s.Counters
			if c.Matched+c.Success == last[s.Name] {
				continue
			}
			last[s.Name] = c.Matched + c.Success
			a.log.Info("sink stats", "sink", s.Name, "matched", c.Matched, "success", c.Success,
				"failed", c.Failed, "retried", c.Retried, "dropped", c.Dropped,
				"queuing", c.Queuing, "inflight", c.Inflight)
		}
	}
}

// Stop closes the MQTT side, drains the buffers within shutdown_timeout and
// closes everything else.
func (a *App) Stop() error {
	a.stopSources()
	a.stopClusterDelivery()
	a.closeBroker()
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	// After the broker, so that the routes of the sessions it ended are
	// withdrawn; before the sinks, which may drain for all of ctx.
	a.leaveCluster(ctx)
	var errs []error
	for _, sr := range a.sinks {
		if err := sr.sink.Drain(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	a.closeAll()
	return errors.Join(errs...)
}

func (a *App) closeAll() {
	a.stopSources()
	if a.admin != nil {
		_ = a.admin.Close()
		a.admin = nil
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	a.stopClusterDelivery()
	a.closeBroker()
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.leaveCluster(ctx)
	for _, sr := range a.sinks {
		sr.close()
	}
	if a.kafka != nil {
		a.kafka.Close()
		a.kafka = nil
	}
}

// closeBroker stops accepting MQTT; Snapshot may run meanwhile.
func (a *App) closeBroker() {
	a.cfgMu.Lock()
	b := a.broker
	a.broker = nil
	a.cfgMu.Unlock()
	if b != nil {
		_ = b.Close()
	}
}
