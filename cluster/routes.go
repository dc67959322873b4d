package cluster

import (
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// routes is the routing table: every node's filters, as the routes topic
// tells them, and an index of those of the nodes that are up, which each
// publish is matched against.
type routes struct {
	self string

	mu     sync.Mutex
	byNode map[string]map[string]struct{} // every node's filters, up or down
	up     map[string]bool                // nodes whose filters are in index
	index  *mqtt.TopicsIndex
	// active counts the filters in index: 0 lets a publish skip matching.
	active atomic.Int64
	// loads are the nodes with filters in index, and reach the most
	// bytes a record to one of them can depend on (-1: none), which
	// bounds widest for every topic.
	loads map[string]*load
	reach atomic.Int64
	// spellings counts, per node and shared filter, the spellings of its
	// prefix ($share, $SHARE …) the node announced: the index keeps them
	// as one entry, which leaves it with the last.
	spellings map[string]int
}

// load is what a node's filters in the index add to a record sent to it.
type load struct{ filters, shared, sharedBytes int }

func newRoutes(self string) *routes {
	r := &routes{self: self, byNode: map[string]map[string]struct{}{}, up: map[string]bool{}, index: mqtt.NewTopicsIndex(),
		loads: map[string]*load{}, spellings: map[string]int{}}
	r.reach.Store(-1)
	return r
}

// set records that node has (or no longer has) subscribers for filter;
// this node's own are kept, never matched, to find stale ones at start.
func (r *routes) set(node, filter string, has bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fs := r.byNode[node]
	_, had := fs[filter]
	switch {
	case has && !had:
		if fs == nil {
			fs = map[string]struct{}{}
			r.byNode[node] = fs
		}
		fs[filter] = struct{}{}
		if r.spell(node, filter, 1) == 1 && r.up[node] {
			r.add(node, filter)
		}
	case !has && had:
		delete(fs, filter)
		if r.spell(node, filter, -1) == 0 && r.up[node] {
			r.remove(node, filter)
		}
	}
}

// spell counts by a spelling of filter that node announced or withdrew and
// returns how many spellings of it the node has now; a filter that is not
// shared has one spelling.
func (r *routes) spell(node, filter string, by int) int {
	if !mqtt.IsSharedFilter(filter) {
		return max(by, 0)
	}
	p := len(mqtt.SharePrefix)
	k := node + "\x00" + strings.ToLower(filter[:p]) + filter[p:]
	n := r.spellings[k] + by
	if n == 0 {
		delete(r.spellings, k)
	} else {
		r.spellings[k] = n
	}
	return n
}

// setUp puts a node's filters into the index, or takes them out.
func (r *routes) setUp(node string, up bool) {
	if node == r.self {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.up[node] == up {
		return
	}
	r.up[node] = up
	for f := range r.byNode[node] {
		if up {
			r.add(node, f)
		} else {
			r.remove(node, f)
		}
	}
}

func (r *routes) add(node, filter string) {
	if r.index.Subscribe(node, packets.Subscription{Filter: filter}) {
		r.active.Add(1)
		r.weigh(node, filter, 1)
	}
}

func (r *routes) remove(node, filter string) {
	if r.index.Unsubscribe(filter, node) {
		r.active.Add(-1)
		r.weigh(node, filter, -1)
	}
}

// weigh counts filter into (by +1) or out of (by -1) node's load and
// measures reach again; r.mu held.
func (r *routes) weigh(node, filter string, by int) {
	l := r.loads[node]
	if l == nil {
		l = &load{}
		r.loads[node] = l
	}
	l.filters += by
	if mqtt.IsSharedFilter(filter) {
		l.shared += by
		l.sharedBytes += by * field(len(filter))
	}
	if l.filters == 0 {
		delete(r.loads, node)
	}
	reach := -1
	for n, l := range r.loads {
		reach = max(reach, destinationBytes(n, l.sharedBytes, l.shared))
	}
	r.reach.Store(int64(reach))
}

// destinationBytes is what a record to node depends on: its name in the
// key and the shared filters it is picked for, shared of them taking
// sharedBytes encoded.
func destinationBytes(node string, sharedBytes, shared int) int {
	return len(node) + sharedBytes + uvarintLen(uint64(shared)) - uvarintLen(0)
}

// size is how many filters of other nodes are routed to.
func (r *routes) size() int64 { return r.active.Load() }

// destination is one node a publish goes to, with the shared filters it
// was picked for.
type destination struct {
	node   string
	groups []string
}

// match returns the other nodes topic must go to, and which of
// localShared (shared filters this node's subscribers match) this node
// delivers: each shared filter goes to one node among those with a member.
func (r *routes) match(topic string, localShared []string) (dests []destination, keep []string) {
	if r.active.Load() == 0 {
		return nil, localShared
	}
	subs := r.index.Subscribers(topic)
	// A cluster has a few nodes: a scan finds one faster than a map.
	to := func(node string) *destination {
		for i := range dests {
			if dests[i].node == node {
				return &dests[i]
			}
		}
		dests = append(dests, destination{node: node})
		return &dests[len(dests)-1]
	}
	for node := range subs.Subscriptions {
		to(node)
	}
	for _, f := range localShared {
		if _, remote := subs.Shared[f]; !remote {
			keep = append(keep, f)
		}
	}
	for f, nodes := range subs.Shared {
		local := false
		for _, l := range localShared {
			local = local || l == f
		}
		pick := rand.IntN(len(nodes) + btoi(local))
		if pick == len(nodes) {
			keep = append(keep, f)
			continue
		}
		for node := range nodes {
			if pick == 0 {
				d := to(node)
				d.groups = append(d.groups, f)
				break
			}
			pick--
		}
	}
	return dests, keep
}

// reaches reports whether topic goes to node for a plain subscription.
func (r *routes) reaches(node, topic string) bool {
	if r.active.Load() == 0 {
		return false
	}
	_, ok := r.index.Subscribers(topic).Subscriptions[node]
	return ok
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// filters returns node's filters.
func (r *routes) filters(node string) map[string]struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]struct{}, len(r.byNode[node]))
	for f := range r.byNode[node] {
		out[f] = struct{}{}
	}
	return out
}

// count is how many filters node has announced.
func (r *routes) count(node string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byNode[node])
}

// widest is, among the other nodes topic goes to, the most bytes of a
// record that depend on its destination: the node's name in the key and
// every shared filter it could be picked for; -1 when it goes to none.
func (r *routes) widest(topic string) int {
	if r.active.Load() == 0 {
		return -1
	}
	subs := r.index.Subscribers(topic)
	per := map[string][2]int{} // node → bytes of its shared filters, their count
	for node := range subs.Subscriptions {
		per[node] = [2]int{}
	}
	for f, nodes := range subs.Shared {
		for node := range nodes {
			p := per[node]
			per[node] = [2]int{p[0] + field(len(f)), p[1] + 1}
		}
	}
	w := -1
	for node, p := range per {
		w = max(w, destinationBytes(node, p[0], p[1]))
	}
	return w
}
