package testkit

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// MQTTSession opens an MQTT 5 session with cp over conn, disconnected when
// the test ends; a refused CONNECT returns the CONNACK and an error. Over TLS
// or WebSocket leave cp.KeepAlive at 0: paho's pinger writes from its own
// goroutine while paho writes a packet in several Writes, which only a TCP
// connection's writev keeps together.
func MQTTSession(t testing.TB, conn net.Conn, cp *paho.Connect, onMsg func(*paho.Publish)) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	cc := paho.ClientConfig{ClientID: cp.ClientID, Conn: conn}
	if onMsg != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onMsg(pr.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

// MQTTClient connects a clean MQTT 5 session over TCP to addr; onMsg, when
// set, receives the publishes. The test fails if the broker refuses it.
func MQTTClient(t testing.TB, addr, clientID string, onMsg func(*paho.Publish)) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial mqtt: %v", err)
	}
	c, ca, err := MQTTSession(t, conn, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}, onMsg)
	if err != nil {
		t.Fatalf("mqtt connect %s: %v (connack %+v)", clientID, err, ca)
	}
	return c
}

// Publish publishes payload and waits up to 15 s for the broker's answer;
// a negative PUBACK is returned, not failed, so that callers check the reason.
func Publish(t testing.TB, c *paho.Client, topic string, qos byte, payload []byte) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	// paho reports a negative PUBACK as an error too; callers check the reason.
	if err != nil && resp == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return resp
}

// Inbox collects what an MQTT subscriber receives.
type Inbox struct {
	mu   sync.Mutex
	msgs []*paho.Publish
}

// Add records one received publish.
func (b *Inbox) Add(p *paho.Publish) {
	b.mu.Lock()
	b.msgs = append(b.msgs, p)
	b.mu.Unlock()
}

// Len is how many publishes arrived so far.
func (b *Inbox) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

// take removes the first publish with payload and tells whether there was one.
func (b *Inbox) take(payload string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, p := range b.msgs {
		if string(p.Payload) == payload {
			b.msgs = append(b.msgs[:i], b.msgs[i+1:]...)
			return true
		}
	}
	return false
}

// All returns a copy of what arrived so far, in order of arrival.
func (b *Inbox) All() []*paho.Publish {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*paho.Publish(nil), b.msgs...)
}

// Subscriber connects an MQTT 5 client whose publishes go to box and
// subscribes to filters with qos unless the session it resumes has the
// subscriptions already. expiry > 0 asks for a persistent session (clean
// start false).
func Subscriber(t testing.TB, addr, id string, expiry uint32, box *Inbox, qos byte, filters ...string) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial mqtt: %v", err)
	}
	cp := &paho.Connect{ClientID: id, CleanStart: expiry == 0, KeepAlive: 30}
	if expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	c, ca, err := MQTTSession(t, conn, cp, box.Add)
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("mqtt connect: %v %+v", err, ca)
	}
	if !ca.SessionPresent {
		var subs []paho.SubscribeOptions
		for _, f := range filters {
			subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: qos})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	return c
}

// Subscribed is the inbox of a clean MQTT 5 session subscribed to filters at
// QoS 1.
func Subscribed(t testing.TB, addr, id string, filters ...string) *Inbox {
	t.Helper()
	box := &Inbox{}
	Subscriber(t, addr, id, 0, box, 1, filters...)
	return box
}

// Subscribe subscribes c to filter at QoS 1 and returns the SUBACK's reason
// code; a refusal is returned, not failed, so that callers check it.
func Subscribe(t testing.TB, c *paho.Client, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil && sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

// Settle waits until box's subscriber, connected to the broker at addr and
// subscribed to topic, got every message the broker queued for it so far:
// the broker writes to a client in the order it queues, so once a marker
// published now to topic arrived, everything queued before it did. The
// marker is taken out of box again.
func Settle(t testing.TB, addr, topic string, box *Inbox) {
	t.Helper()
	marker := fmt.Sprintf("settle-%d", time.Now().UnixNano())
	settleBy(t, MQTTClient(t, addr, marker, nil), topic, marker, box)
}

// settleBy is Settle with the marker published by c.
func settleBy(t testing.TB, c *paho.Client, topic, marker string, box *Inbox) {
	t.Helper()
	if resp := Publish(t, c, topic, 1, []byte(marker)); resp.ReasonCode != 0 {
		t.Fatalf("publish the marker: PUBACK reason %d", resp.ReasonCode)
	}
	WaitFor(t, 20*time.Second, "the marker", func() bool { return box.take(marker) })
}

// Payloads lists the payloads that arrived so far, in order of arrival.
func (b *Inbox) Payloads() []string {
	var out []string
	for _, p := range b.All() {
		out = append(out, string(p.Payload))
	}
	return out
}

// PublishRetained publishes a retained QoS 1 message (an empty payload
// clears the topic's) and waits for its PUBACK.
func PublishRetained(t testing.TB, c *paho.Client, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish retained %s: %v", topic, err)
	}
}

// Retained is what a new subscriber to filter on the broker at addr is
// sent at once: its retained messages. The subscriber publishes the marker
// itself: the broker queues a SUBSCRIBE's retained messages after its
// SUBACK, before it reads the client's next packet, so a marker from
// another client could overtake them.
func Retained(t testing.TB, addr, filter string) []string {
	t.Helper()
	box := &Inbox{}
	settle := fmt.Sprintf("settle/retained-%d", time.Now().UnixNano())
	c := Subscriber(t, addr, settle, 0, box, 1, filter, settle)
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	settleBy(t, c, settle, settle, box)
	return box.Payloads()
}
