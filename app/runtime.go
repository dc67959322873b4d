package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/admin"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/connector"
	"github.com/mqkafka/mqkafka/producer"
	"github.com/mqkafka/mqkafka/rule"
)

// sinkRun is a running sink with the producers it owns.
type sinkRun struct {
	log     *slog.Logger
	cfg     conf.Sink
	conn    conf.Connector
	sink    *producer.Sink
	clients []*producer.Client
	closed  bool
}

// enginePublisher lets the broker's hook keep one Publisher while rules are
// replaced at run time: the engine is swapped atomically.
type enginePublisher struct{ e atomic.Pointer[rule.Engine] }

func (p *enginePublisher) Matches(topic string) bool { return p.e.Load().Matches(topic) }
func (p *enginePublisher) Publish(ctx context.Context, w ack.Wait, ev *rule.Event) error {
	return p.e.Load().Publish(ctx, w, ev)
}

// buildSink starts a sink and its concurrent_clients producers; each
// partition is drained by one of them, so order per partition holds.
func (a *App) buildSink(s conf.Sink, cn conf.Connector) (*sinkRun, error) {
	sr := &sinkRun{cfg: s, conn: cn, log: a.log}
	for no := range max(cn.ConcurrentClients, 1) {
		cc := producer.NewClientConfig(cn, s)
		cc.ClientNo = no
		client, err := producer.NewClient(cc, a.log)
		if err != nil {
			sr.close()
			return nil, err
		}
		sr.clients = append(sr.clients, client)
	}
	sink, err := producer.NewSink(s, sr.clients, producer.SinkEnv{
		DataDir: a.cfg.Broker.DataDir, Log: a.log, Overloaded: a.memoryMonitor(), ReadCache: a.readCache,
	})
	if err != nil {
		sr.close()
		return nil, err
	}
	sr.sink = sink
	return sr, nil
}

// close stops the sink and its producers; it may be called again.
func (sr *sinkRun) close() {
	if sr.closed {
		return
	}
	sr.closed = true
	if sr.sink != nil {
		if err := sr.sink.Close(); err != nil {
			sr.log.Error("closing sink", "sink", sr.cfg.Name, "err", err)
		}
	}
	for _, c := range sr.clients {
		c.Close()
	}
}

// retire stops a sink that was removed or replaced. A memory sink first
// drains what it holds, in the background, for up to shutdown_timeout; a
// disk or hybrid sink closes at once, because its records are on disk and
// its replacement reopens the same queues.
func (a *App) retire(sr *sinkRun) {
	if sr.cfg.Buffer.Mode != "memory" {
		sr.close()
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithTimeout(a.ctx, a.cfg.ShutdownTimeout)
		defer cancel()
		_ = sr.sink.Drain(ctx)
		sr.close()
	}()
}

// buildEngine compiles every rule (RMQTT shorthand ones included) and
// resolves their actions; it prepares the sources, which read the rules.
func (a *App) buildEngine(cfg *conf.Config, node string) (*rule.Engine, error) {
	actions := map[string]rule.Action{}
	var rules []*rule.Rule
	for _, sr := range a.sinks {
		actions[conf.ActionName(sr.cfg.Name)] = sr.sink
		if len(sr.cfg.MQTTTopicFilters) > 0 {
			r, err := shorthandRule(sr.cfg)
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
	if err := a.prepareSources(node, rules, actions); err != nil {
		return nil, err
	}
	e, err := rule.NewEngine(rules, actions)
	if err != nil {
		return nil, err
	}
	e.Logger = a.log
	return e, nil
}

// reconfigure replaces the running rules, sinks and sources with cfg's.
// Unchanged sinks keep running untouched; buffered records of changed or
// removed sinks are kept (on disk, or drained from memory), and MQTT
// connections stay up. Listener, admin and log settings need a restart.
func (a *App) reconfigure(cfg *conf.Config) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	connectors := map[string]conf.Connector{}
	for _, cn := range cfg.Connectors {
		connectors[cn.Name] = cn
	}
	wanted := map[string]conf.Sink{}
	for _, s := range cfg.Sinks {
		wanted[s.Name] = s
	}
	var kept []*sinkRun
	var retired []*sinkRun
	for _, sr := range a.sinks {
		s, ok := wanted[sr.cfg.Name]
		if ok && reflect.DeepEqual(s, sr.cfg) && connectors[s.Connector].SameSettings(sr.conn) {
			kept = append(kept, sr)
			continue
		}
		retired = append(retired, sr)
	}
	// Disk queues of a replaced sink must be closed before the new one
	// opens them; memory ones drain on while the new sink takes over.
	for _, sr := range retired {
		a.retire(sr)
	}
	a.sinks = kept
	var errs []error
	for _, s := range cfg.Sinks {
		if a.sinkRun(s.Name) != nil {
			continue
		}
		sr, err := a.buildSink(s, connectors[s.Connector])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.sinks = append(a.sinks, sr)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	a.stopSources()
	old := a.cfg
	a.cfg = cfg
	e, err := a.buildEngine(cfg, a.node)
	if err != nil {
		a.cfg = old
		return err
	}
	a.engine.e.Store(e)
	if err := a.startSources(); err != nil {
		return err
	}
	if !reflect.DeepEqual(old.Broker, cfg.Broker) || !reflect.DeepEqual(old.Admin, cfg.Admin) || old.Log != cfg.Log ||
		!reflect.DeepEqual(old.Cluster, cfg.Cluster) {
		a.log.Warn("broker, admin, cluster and log settings changed: they take effect at the next restart")
	}
	a.log.Info("configuration applied", "sinks", len(a.sinks), "rules", len(cfg.Rules), "sources", len(cfg.Sources))
	return nil
}

func (a *App) sinkRun(name string) *sinkRun {
	for _, sr := range a.sinks {
		if sr.cfg.Name == name {
			return sr
		}
	}
	return nil
}

// LoadConfig loads and fully validates a config, librdkafka properties
// included, with the run-time changes of <data_dir>/runtime.toml applied.
func LoadConfig(path string) (*conf.Config, error) {
	cfg, err := conf.Load(path)
	if err != nil {
		return nil, err
	}
	o, err := conf.LoadOverlay(conf.OverlayPath(cfg.Broker.DataDir))
	if err != nil {
		return nil, err
	}
	cfg, _, err = effective(path, o)
	return cfg, err
}

// effective merges the config file with the run-time overlay and validates
// the result exactly as `check` does.
func effective(path string, o *conf.Overlay) (*conf.Config, map[string]any, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	// The file alone is parsed first, so that its problems carry its lines.
	cfg, err := conf.Parse(path, text)
	if err != nil {
		return nil, nil, err
	}
	doc, err := o.Merge(text)
	if err != nil {
		return nil, nil, err
	}
	if !o.Empty() {
		if cfg, err = conf.ParseMerged(conf.OverlayPath(cfg.Broker.DataDir)+" merged with "+path, doc); err != nil {
			return nil, nil, err
		}
	}
	if ps := checkConnectors(cfg); len(ps) > 0 {
		return nil, nil, &conf.Error{File: path, Problems: ps}
	}
	return cfg, doc, nil
}

// Change implements admin.Runtime.
func (a *App) Change(ctx context.Context, ch conf.Change) error {
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	_, base, err := effective(a.cfgPath, a.overlay)
	if err != nil {
		return err
	}
	o, err := a.overlay.With(ch, base)
	if err != nil {
		return err
	}
	cfg, _, err := effective(a.cfgPath, o)
	if err != nil {
		return err
	}
	if err := a.reconfigure(cfg); err != nil {
		return err
	}
	if err := o.Save(conf.OverlayPath(a.cfg.Broker.DataDir)); err != nil {
		return err
	}
	a.overlay = o
	return nil
}

// Entry implements admin.Runtime. It reads the file merged with the
// overlay, as Change does, so that an edit starts from what Change changes.
func (a *App) Entry(kind, name string) (map[string]any, error) {
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	text, err := os.ReadFile(a.cfgPath)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	doc, err := a.overlay.Merge(text)
	if err != nil {
		return nil, err
	}
	key := "name"
	if kind == "rules" {
		key = "id"
	}
	var list []any
	switch v := doc[kind].(type) {
	case []any:
		list = v
	case []map[string]any:
		for _, e := range v {
			list = append(list, e)
		}
	}
	for _, e := range list {
		if m, ok := e.(map[string]any); ok && m[key] == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%s %q: %w", kind, name, conf.ErrNotFound)
}

// Reload re-reads the config file (SIGHUP); an invalid file is rejected
// with its errors and the running configuration stays.
func (a *App) Reload() error {
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	cfg, _, err := effective(a.cfgPath, a.overlay)
	if err != nil {
		return err
	}
	return a.reconfigure(cfg)
}

// Config implements admin.Runtime.
func (a *App) Config() *conf.Config {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.cfg
}

// Ready implements admin.Runtime.
func (a *App) Ready() (bool, string) {
	a.cfgMu.Lock()
	b := a.broker
	a.cfgMu.Unlock()
	if b == nil {
		return false, "the MQTT listeners are not open"
	}
	if ok, why := b.Healthy(); !ok {
		return false, why
	}
	snap := a.Snapshot()
	for _, c := range snap.Connectors {
		if c.Status != "connected" {
			return false, fmt.Sprintf("connector %s is %s", c.Name, c.Status)
		}
	}
	for _, s := range snap.Sinks {
		if s.BufferError != "" {
			return false, fmt.Sprintf("sink %s refuses records: %s", s.Name, s.BufferError)
		}
	}
	if c := snap.Cluster; c != nil && c.Conflict != "" {
		return false, fmt.Sprintf("cluster %s: %s", c.Name, c.Conflict)
	}
	if c := snap.Cluster; c != nil && c.Kafka != "connected" {
		return false, fmt.Sprintf("cluster %s: Kafka is %s; publishes for other nodes wait", c.Name, c.Kafka)
	}
	return true, ""
}

// TestConnector implements admin.Runtime.
func (a *App) TestConnector(ctx context.Context, cn conf.Connector) error {
	c, err := producer.NewClient(producer.NewClientConfig(cn, conf.Sink{}), a.log.With("test", true))
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Ping(ctx)
}

// Snapshot implements admin.Runtime.
func (a *App) Snapshot() admin.Snapshot {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	s := admin.Snapshot{Time: time.Now(), Version: a.version, Started: a.started}
	if a.broker != nil {
		in := a.broker.Info()
		s.Broker = admin.BrokerStats{Connections: in.ClientsConnected, Sessions: int64(a.broker.Sessions()), MessagesReceived: in.MessagesReceived,
			MessagesSent: in.MessagesSent, MessagesDropped: in.MessagesDropped + in.InflightDropped, BytesReceived: in.BytesReceived,
			BytesSent: in.BytesSent, Retained: in.Retained, Subscriptions: in.Subscriptions, Inflight: in.Inflight,
			Dropped: a.broker.Drops(), Refused: a.broker.Refused(),
			ConnectionsPending: int64(a.broker.Pending()), AcceptErrors: a.broker.AcceptErrors()}
		s.Listeners = a.broker.Addrs()
	}
	status := map[string]connector.Status{}
	for _, cn := range a.cfg.Connectors {
		status[cn.Name] = connector.Connected
	}
	for _, sr := range a.sinks {
		worst := connector.Connected
		for _, c := range sr.clients {
			worst = min(worst, c.Status())
			status[sr.conn.Name] = min(status[sr.conn.Name], c.Status())
		}
		s.Sinks = append(s.Sinks, sinkStatus(sr, worst))
	}
	for _, cn := range a.cfg.Connectors {
		st := status[cn.Name]
		s.Connectors = append(s.Connectors, admin.ConnectorStatus{Name: cn.Name, Status: st.String(), Code: int(st)})
	}
	if e := a.engine.e.Load(); e != nil {
		for _, r := range e.Rules() {
			st := r.Stats()
			s.Rules = append(s.Rules, admin.RuleStatus{ID: r.ID, SQL: ruleSQL(a.cfg, r.ID), Actions: r.Actions,
				Matched: int64(st.Matched), Passed: int64(st.Passed), Failed: int64(st.Failed), NoResult: int64(st.NoResult),
				From: r.Stmt.From, Sources: r.Stmt.Sources})
		}
	}
	s.Sources = a.sourceStatuses()
	s.Cluster = a.clusterStatus()
	return s
}

func ruleSQL(cfg *conf.Config, id string) string {
	for _, r := range cfg.Rules {
		if r.ID == id {
			return r.SQL
		}
	}
	return ""
}

func sinkStatus(sr *sinkRun, st connector.Status) admin.SinkStatus {
	c := &sr.sink.Counters
	out := admin.SinkStatus{Name: sr.cfg.Name, Connector: sr.conn.Name, Status: st.String(), Config: sr.cfg,
		Counters: admin.SinkCounters{Matched: c.Matched.Load(), Success: c.Success.Load(), Failed: c.Failed.Load(),
			Retried: c.Retried.Load(), Dropped: map[string]int64{}}}
	if err := sr.sink.BufferErr(); err != nil {
		out.BufferError = err.Error()
	}
	for r, n := range c.Dropped() {
		out.Counters.Dropped[string(r)] = n
	}
	out.Counters.InflightBytes, _ = sr.sink.InflightBytes()
	for _, p := range sr.sink.Stats() {
		out.Partitions = append(out.Partitions, admin.PartitionStatus{Topic: p.Topic, Partition: p.Partition,
			Queuing: p.Records, QueuingBytes: p.Bytes, Inflight: p.Inflight})
		out.Counters.Queuing += p.Records - p.Inflight
		out.Counters.Inflight += p.Inflight
	}
	return out
}

// checkHealth asks each connector's clients for metadata every
// health_check_interval; a status change never restarts a producer.
func (a *App) checkHealth(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := map[*producer.Client]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.cfgMu.Lock()
		var due []*producer.Client
		for _, sr := range a.sinks {
			for _, c := range sr.clients {
				if time.Since(last[c]) >= sr.conn.HealthCheckInterval {
					last[c] = time.Now()
					due = append(due, c)
				}
			}
		}
		a.cfgMu.Unlock()
		for _, c := range due {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = c.Ping(hctx)
			cancel()
		}
	}
}

func (a *App) sourceStatuses() []admin.SourceStatus {
	if a.sources == nil {
		return nil
	}
	var out []admin.SourceStatus
	for _, src := range a.sources.sources {
		c := &src.Counters
		st := admin.SourceStatus{Name: src.Name(), Status: src.Status().String(), Received: c.Received.Load(),
			Success: c.Success.Load(), Failed: c.Failed.Load(), Dropped: map[string]int64{}}
		for r, n := range c.Dropped() {
			st.Dropped[string(r)] = n
		}
		for p, lag := range c.Lag() {
			st.Lag = append(st.Lag, admin.PartitionLag{Topic: p.Topic, Partition: p.Partition, Lag: lag})
		}
		for _, sc := range a.cfg.Sources {
			if sc.Name == src.Name() {
				st.Config = sc
			}
		}
		out = append(out, st)
	}
	return out
}
