package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mqkafka/mqkafka/cluster"
	"github.com/mqkafka/mqkafka/conf"
)

// clusterWait bounds how long a start waits for Kafka to create or check
// the cluster's topics and to read its state.
const clusterWait = 30 * time.Second

// joinCluster makes the broker, not yet started, one node of the
// [cluster]: it reads the cluster's state from Kafka first, so that the
// routes and retained messages are known when the broker starts.
func (a *App) joinCluster() error {
	cc := a.cfg.Cluster
	var cn conf.Connector
	for _, c := range a.cfg.Connectors {
		if c.Name == cc.Connector {
			cn = c
		}
	}
	n, err := cluster.New(cluster.Config{Cluster: *cc, Node: a.node, Connector: cn, Version: a.version,
		Address: strings.Join(a.broker.Addrs(), ","), Admin: a.cfg.Admin.Listen}, a.log)
	if err != nil {
		return err
	}
	a.cluster = n
	if err := a.broker.JoinCluster(n); err != nil {
		return err
	}
	if err := a.broker.ShareSessions(n); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(a.ctx, clusterWait)
	defer cancel()
	if err := n.Load(ctx); err != nil {
		return fmt.Errorf("cluster %s through connector %s: %w", cc.Name, cc.Connector, err)
	}
	return nil
}

// stopClusterDelivery stops delivering other nodes' publishes, before the
// broker closes.
func (a *App) stopClusterDelivery() {
	if a.cluster != nil {
		a.cluster.StopReceiving()
	}
}

// leaveCluster tells the other nodes this one stops and sends what is
// queued for them, within ctx.
func (a *App) leaveCluster(ctx context.Context) {
	a.cfgMu.Lock()
	n := a.cluster
	a.cluster = nil
	a.cfgMu.Unlock()
	if n != nil {
		n.Close(ctx)
	}
}

// clusterStatus is the cluster as this node sees it, nil without one.
func (a *App) clusterStatus() *cluster.Status {
	if a.cluster == nil {
		return nil
	}
	st := a.cluster.Status()
	return &st
}
