package broker

import "github.com/mqkafka/mqkafka/third_party/mochi/system"

// Info is a copy of the broker's counters (connections, messages, bytes,
// retained, subscriptions).
func (b *Broker) Info() *system.Info { return b.srv.Info.Clone() }
