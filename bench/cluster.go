package bench

import (
	"context"
	"fmt"
)

// clusterNodes is how many mqkafka processes the cluster scenario runs.
const clusterNodes = 3

// clusterConfig makes one bench mqkafka a node of a cluster.
type clusterConfig struct {
	name, node string
	partitions int
}

// cluster is three mqkafka nodes on one Kafka: the MQTT clients publish on
// the first, one subscriber reads on the second, so that every message
// crosses nodes through Kafka. broker-raw, run with it at the same rate, is
// the same load on one node. Then the first node is killed and the
// persistent sessions it held move to the others (moveSessions).
func (r *runner) cluster(ctx context.Context, p Params) *Result {
	p.Buffer, p.Fsync, p.HalfRate = "", "", false
	key := ceilingKey(ScenarioCluster, p) + fmt.Sprintf(" rate=%v", p.Rate)
	if r.once[key] {
		return nil
	}
	r.once[key] = true
	r.oneNode(ctx, p)
	name, tag := r.next("cluster", p)
	res := newResult(name, ScenarioCluster, p)
	defer r.add(res)
	if r.o.Broker != "" {
		res.Skipped = "the cluster scenario needs the mqkafka nodes the bench starts (not --broker)"
		return res
	}
	res.fail(r.runCluster(ctx, name, tag, p, res))
	return res
}

func (r *runner) runCluster(ctx context.Context, name string, tag uint32, p Params, res *Result) error {
	k, err := r.startKafka(ctx, name, 0)
	if err != nil {
		return err
	}
	defer k.close()
	var nodes []*mqSide
	for i := range clusterNodes {
		node := fmt.Sprintf("n%d", i+1)
		mq, err := r.startMQKafka(ctx, name+"-"+node, mqConfig{kafka: k.addr,
			cluster: &clusterConfig{name: fmt.Sprintf("bench-%08x", tag), node: node, partitions: p.Partitions}})
		if err != nil {
			return err
		}
		defer r.stopMQKafka(mq)
		nodes = append(nodes, mq)
	}
	// The CPU measured is the publishing node's and Kafka's.
	if err := r.toSubscriber(ctx, name, tag, p, p.loadSpec(nodes[0].addr, tag, r.o.Drain), nodes[1].addr, nodes[0], k, res); err != nil {
		return err
	}
	return r.moveSessions(ctx, tag, nodes[0], nodes[1:], res)
}

// oneNode is broker-raw at p's rate: the ceiling itself at full speed.
func (r *runner) oneNode(ctx context.Context, p Params) {
	if p.Rate == 0 {
		r.ceilingBroker(ctx, p)
		return
	}
	name, tag := r.next("broker-raw", p)
	res := newResult(name, ScenarioBrokerRaw, p)
	defer r.add(res)
	res.fail(r.runBrokerRaw(ctx, name, tag, p, res))
}
