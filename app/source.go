package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/mqkafka/mqkafka/broker"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/consumer"
	"github.com/mqkafka/mqkafka/rule"
)

// sourceSet is the ingress half of the bridge: the Kafka sources, the
// rules' republish actions and the inline publisher they share.
type sourceSet struct {
	inline    *broker.Inline
	sources   []*consumer.Source
	republish []*broker.Republish
	started   bool
	stopped   bool
	// cancel and done own the stats goroutine.
	cancel context.CancelFunc
	done   chan struct{}
}

// prepareSources registers the rules' republish actions and builds the
// sources, before the rule engine resolves the actions. Nothing reads
// Kafka or publishes before startSources.
func (a *App) prepareSources(node string, rules []*rule.Rule, actions map[string]rule.Action) error {
	ss := &sourceSet{}
	// A reconfiguration builds a new set: the inline publisher, bound to
	// the one broker, carries over.
	if a.sources != nil {
		ss.inline = a.sources.inline
	} else {
		ss.inline = broker.NewInline()
	}
	a.sources = ss
	byID := map[string]conf.Rule{}
	for _, r := range a.cfg.Rules {
		byID[r.ID] = r
	}
	for _, cr := range rules {
		r, ok := byID[cr.ID]
		if !ok {
			continue
		}
		for j, rp := range r.Republish {
			act, err := broker.NewRepublish(cr.ID, cr.Stmt.From, rp, ss.inline, a.log)
			if err != nil {
				return fmt.Errorf("rule %s: republish: %w", cr.ID, err)
			}
			name := conf.RepublishActionName(cr.ID, j)
			actions[name] = act
			// Clipped: the names came from the config, whose array must not change.
			cr.Actions = append(slices.Clip(cr.Actions), name)
			ss.republish = append(ss.republish, act)
		}
	}
	connectors := map[string]conf.Connector{}
	for _, cn := range a.cfg.Connectors {
		connectors[cn.Name] = cn
	}
	for _, sc := range a.cfg.Sources {
		var ras []consumer.RuleActions
		for _, cr := range rules {
			if !slices.Contains(cr.Stmt.Sources, sc.Name) {
				continue
			}
			ra := consumer.RuleActions{Rule: cr}
			for _, name := range cr.Actions {
				act, ok := actions[name]
				if !ok {
					return fmt.Errorf("rule %s: no action %q", cr.ID, name)
				}
				ra.Actions = append(ra.Actions, act)
			}
			ras = append(ras, ra)
		}
		src, err := consumer.New(sc, connectors[sc.Connector], consumer.Env{
			Broker: ss.inline, Rules: ras, Node: node, Log: a.log,
		})
		if err != nil {
			return err
		}
		ss.sources = append(ss.sources, src)
	}
	return nil
}

// startSources runs once the broker serves, after it restored the
// persisted sessions: a message read from Kafka then finds the offline
// sessions it must be queued in (EMQX's emqx#19074 loses that backlog).
func (a *App) startSources() error {
	ss := a.sources
	if err := ss.inline.Bind(a.broker); err != nil {
		// Republish actions waiting for the broker must not wait forever.
		ss.inline.Close()
		return err
	}
	ss.started = true
	for _, s := range ss.sources {
		s.Start()
	}
	ctx, cancel := context.WithCancel(context.Background())
	ss.cancel, ss.done = cancel, make(chan struct{})
	go func() {
		defer close(ss.done)
		a.reportSourceStats(ctx, ss.sources, a.cfg.StatsInterval)
	}()
	return nil
}

// stopSources stops every source before the broker closes, so that each
// commits exactly what the broker took. It is safe to call more than once.
func (a *App) stopSources() {
	ss := a.sources
	if ss == nil || ss.stopped {
		return
	}
	ss.stopped = true
	if ss.cancel != nil {
		ss.cancel()
		<-ss.done
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(a.cfg.ShutdownTimeout, 5*time.Second))
	defer cancel()
	for _, s := range ss.sources {
		if err := s.Stop(ctx); err != nil {
			a.log.Error("stopping source", "source", s.Name(), "err", err)
		}
	}
	if !ss.started {
		// Never bound: nothing may wait for a broker that will not come.
		ss.inline.Close()
	}
}

// reportSourceStats logs one line per source every interval while there is traffic.
func (a *App) reportSourceStats(ctx context.Context, sources []*consumer.Source, every time.Duration) {
	if len(sources) == 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := make([]int64, len(sources))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, s := range sources {
			c := &s.Counters
			received := c.Received.Load()
			if received == last[i] {
				continue
			}
			last[i] = received
			var lag int64
			for _, n := range c.Lag() {
				lag += n
			}
			a.log.Info("source stats", "source", s.Name(), "status", s.Status().String(), "received", received,
				"success", c.Success.Load(), "failed", c.Failed.Load(), "dropped", c.Dropped(), "lag", lag,
				"kafka_errors", c.KafkaErrors.Load())
		}
	}
}
