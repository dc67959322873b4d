package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/rule"
)

// noRules is a Publisher no topic matches: the broker only routes MQTT.
type noRules struct{}

func (noRules) Matches(string) bool                                  { return false }
func (noRules) Publish(context.Context, ack.Wait, *rule.Event) error { return nil }

// TestFanInQoS1Subscriber: many connections publish QoS 1 to one QoS 1
// subscriber, which must get every message. mochi v2.7.9 stalled such a
// subscriber for good once its send quota (the subscriber's Receive Maximum)
// ran out: the messages it then queued were sent one per packet from the
// client and dropped from the in-flight store when written, so their PUBACKs
// gave no quota back, and new messages queued behind it until the store was
// full and they were dropped, while every publisher still got its PUBACK.
func TestFanInQoS1Subscriber(t *testing.T) {
	// 60 connections publish 120 messages each, 4 at a time: 7,200 in all,
	// fewer than max_inflight (8192), so that no message may be dropped even
	// if the subscriber falls behind (past max_inflight messages queued for
	// one subscriber, mochi drops and counts the rest, by design).
	for _, tc := range []struct {
		name    string
		recvMax uint16 // the subscriber's Receive Maximum; 0: none sent
	}{
		{"no-receive-maximum", 0},        // mochi then applies no send quota
		{"receive-maximum-65535", 65535}, // the bench's; mochi caps it at max_inflight
		{"receive-maximum-1024", 1024},
		{"receive-maximum-16", 16},
	} {
		t.Run(tc.name, func(t *testing.T) { fanIn(t, tc.recvMax, 60, 120, 4) })
	}
}

// routingBroker starts a broker whose bridge reads no topic; its warnings
// are printed if the test fails.
func routingBroker(t *testing.T) *Broker {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			s := logs.String()
			if len(s) > 8000 {
				s = s[:4000] + "\n...\n" + s[len(s)-4000:]
			}
			t.Logf("broker log:\n%s", s)
		}
	})
	cfg := brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ type = "tcp", address = "127.0.0.1:0" }]
# These tests fill a subscriber's send quota on purpose; the bound on what
# may wait behind it has its own test (TestAttackOfflineQueue).
max_mqueue_len = 0
[broker.auth]
allow_anonymous = true
`, t.TempDir()))
	b, err := New(cfg, "test@host", noRules{}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		_ = b.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestSubscriberThatPublishes: a client subscribed at QoS 1 with a small
// Receive Maximum publishes QoS 1 to its own subscription. Packet ids are
// per direction, so its publishes reuse the ids of messages in flight to
// it; mochi v2.7.9 then dropped those messages from the in-flight store
// (never resent, their PUBACKs returning no send quota) and the session
// stalled after a few messages.
func TestSubscriberThatPublishes(t *testing.T) {
	b := routingBroker(t)
	const n = 400
	recvMax := uint16(4)
	var got atomic.Int64
	seen := make([]atomic.Bool, n)
	c, _, err := testkit.MQTTSession(t, dial(t, b.Addrs()[0]), &paho.Connect{ClientID: "loop", CleanStart: true,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &recvMax}}, func(p *paho.Publish) {
		if i := binary.BigEndian.Uint32(p.Payload); int(i) < n && !seen[i].Swap(true) {
			got.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "loop/#", QoS: 1}}}); err != nil || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe: %v %+v", err, sa)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				payload := binary.BigEndian.AppendUint32(nil, uint32(i))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Publish(ctx, &paho.Publish{Topic: "loop/x", QoS: 1, Payload: payload})
				cancel()
				if err != nil {
					t.Errorf("publish %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	testkit.WaitFor(t, 10*time.Second, "every message back at the publisher", func() bool { return got.Load() == n })
}

// fanIn connects one subscriber to fan/#, then pubs publishers that publish
// perPub messages each, inflight at a time, and waits for the subscriber to
// have each of them.
func fanIn(t *testing.T, recvMax uint16, pubs, perPub, inflight int) {
	b := routingBroker(t)
	addr := b.Addrs()[0]

	total := pubs * perPub
	seen := make([]atomic.Bool, total)
	var distinct, dups, foreign atomic.Int64
	cp := &paho.Connect{ClientID: "fan-sub", CleanStart: true}
	if recvMax > 0 {
		cp.Properties = &paho.ConnectProperties{ReceiveMaximum: &recvMax}
	}
	subc, _, err := testkit.MQTTSession(t, dial(t, addr), cp, func(p *paho.Publish) {
		if len(p.Payload) < 4 {
			foreign.Add(1)
			return
		}
		id := binary.BigEndian.Uint32(p.Payload)
		switch {
		case int(id) >= total:
			foreign.Add(1)
		case seen[id].Swap(true):
			dups.Add(1)
		default:
			distinct.Add(1)
		}
	})
	if err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	sa, err := subc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "fan/#", QoS: 1}}})
	cancel()
	if err != nil || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe: %v %+v", err, sa)
	}

	clients := make([]*paho.Client, pubs)
	for i := range clients {
		clients[i] = testkit.MQTTClient(t, addr, fmt.Sprintf("fan-pub-%d", i), nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, pubs*inflight)
	for i, c := range clients {
		for w := range inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				topic := fmt.Sprintf("fan/%d/%d", i, w)
				for n := w; n < perPub; n += inflight {
					payload := make([]byte, 100)
					binary.BigEndian.PutUint32(payload, uint32(i*perPub+n))
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
					cancel()
					if err == nil && r.ReasonCode >= 0x80 {
						err = fmt.Errorf("PUBACK reason %#x", r.ReasonCode)
					}
					if err != nil {
						errs <- fmt.Errorf("publisher %d: %w", i, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Every publish is acknowledged; the subscriber must get them all. The
	// wait ends early once deliveries stop for a while: a stalled session
	// sends nothing more.
	deadline := time.Now().Add(10 * time.Second)
	last, lastChange := distinct.Load(), time.Now()
	for distinct.Load() < int64(total) && time.Now().Before(deadline) && time.Since(lastChange) < 3*time.Second {
		time.Sleep(20 * time.Millisecond)
		if n := distinct.Load(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	in := b.srv.Info.Clone()
	if n := distinct.Load(); n != int64(total) {
		t.Fatalf("subscriber got %d of %d messages (dups %d, foreign %d); broker: inflight %d, inflight dropped %d, messages dropped %d",
			n, total, dups.Load(), foreign.Load(), in.Inflight, in.InflightDropped, in.MessagesDropped)
	}
	if in.InflightDropped != 0 || in.MessagesDropped != 0 {
		t.Fatalf("broker dropped messages: inflight dropped %d, messages dropped %d", in.InflightDropped, in.MessagesDropped)
	}
}
