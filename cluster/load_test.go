package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestLoadReadsEveryStatePartitionToItsEnd: while a node loads, the
// others' heartbeats keep arriving, so the nodes topic reaches its end
// again and again; Load returns only once every state partition was
// read to its end, with every retained message. Reads of one record
// batch per partition at a time keep the retained topic's partitions
// behind the nodes topic.
func TestLoadReadsEveryStatePartitionToItsEnd(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0)
	load := func() *Node {
		t.Helper()
		return loadedNode(t, addr, 3, `properties = { "max.partition.fetch.bytes" = "2048" }`)
	}
	load() // creates the internal topics

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// One record a batch, each larger than half the fetch size.
	const retained = 600
	payload := []byte(strings.Repeat("r", 1200))
	for i := range retained {
		topic := fmt.Sprintf("r/%d", i)
		rec := &kgo.Record{Topic: "mqkafka.t.retained", Key: []byte(topic), Value: appendMessage(nil, &Message{Topic: topic, Retain: true, Payload: payload})}
		if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	var beating sync.WaitGroup
	defer beating.Wait()
	defer stop()
	beating.Go(func() {
		hb, _ := json.Marshal(heartbeat{Version: "test", Started: time.Now()})
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				cl.Produce(ctx, &kgo.Record{Topic: "mqkafka.t.nodes", Key: []byte("n2"), Value: hb}, nil)
			}
		}
	})
	// Each load is a chance for a heartbeat to arrive between two reads.
	for range 5 {
		if got := len(load().retained); got != retained {
			t.Fatalf("the node loaded %d retained messages of %d", got, retained)
		}
	}
}
