package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqkafka/mqkafka/broker"
	"github.com/mqkafka/mqkafka/cluster"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// TestFailedQueueReadKeepsOffset: a resume whose read of the session's
// queue fails records the queue from where it was, not from offset 0, so
// that the next resume does not deliver the whole history again.
func TestFailedQueueReadKeepsOffset(t *testing.T) {
	kc, kafka := testkit.NewKafka(t, 0)
	n1 := join(t, kafka, "n1")
	const id = "keep"
	s := cluster.Session{Persistent: true, Expiry: 300, Version: 5, Subscriptions: []cluster.Subscription{{Filter: "keep/#", QoS: 1}}, From: -1}
	for range 3 {
		n1.n.Hold(id, s)
		n1.n.Release(id, s, nil)
	}
	var from int64
	testkit.WaitFor(t, 10*time.Second, "the third release recorded", func() bool {
		r := n1.n.Session(id)
		if r == nil || r.Connected || r.From < 2 {
			return false
		}
		from = r.From
		return true
	})
	kc.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		lo := req.(*kmsg.ListOffsetsRequest)
		resp := lo.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range lo.Topics {
			if !strings.HasSuffix(rt.Topic, ".queues") {
				return nil, nil, false
			}
			t := kmsg.NewListOffsetsResponseTopic()
			t.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				p := kmsg.NewListOffsetsResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := n1.n.Claim(ctx, id, "", true, true, 0)
	if err == nil {
		t.Fatal("the queue read did not fail")
	}
	if c.Session == nil {
		t.Fatal("the session is not resumed")
	}
	s.From = c.From
	n1.n.Hold(id, s)
	if got := n1.n.Session(id).From; got != from {
		t.Fatalf("queue recorded from %d after a failed read, want %d", got, from)
	}
}

// TestSessionRecordFromTheFuture: a record another writer put in the
// sessions topic with the largest epoch does not wedge its client id: a
// connection here still takes the session.
func TestSessionRecordFromTheFuture(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	n1 := join(t, kafka, "n1")
	const id = "future"
	testkit.Produce(t, kafka, []*kgo.Record{
		{Topic: "mqkafka.t.sessions", Key: []byte("seen"), Value: []byte(`{"owner":"","node":"ghost","persistent":true,"epoch":3,"from":0}`)},
		{Topic: "mqkafka.t.sessions", Key: []byte(id), Value: []byte(`{"owner":"","node":"ghost","connected":true,"persistent":true,"epoch":18446744073709551615,"from":-5}`)},
	})
	testkit.WaitFor(t, 10*time.Second, "the record after it read", func() bool { return n1.n.Session("seen") != nil })
	n1.n.Hold(id, cluster.Session{Persistent: true, Expiry: 300, Version: 5, From: -1})
	if s := n1.n.Session(id); s == nil || s.Node != "n1" || !s.Connected {
		t.Fatalf("the session held here is recorded as %+v", s)
	}
}

// TestSubscriptionTooLargeForSessionRecord: a filter that would make a
// persistent session's record larger than message.max.bytes is refused
// with SUBACK 0x97 and counted, and the filters accepted before it are
// all in the record the session leaves in the cluster.
func TestSubscriptionTooLargeForSessionRecord(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	n1 := joinSessions(t, "n1", nodeConfig(t, kafka, "n1", "[connectors.properties]\n\"message.max.bytes\" = \"5000\"\n"), shareNode)
	c := testkit.Subscriber(t, n1.addr, "big", 300, &testkit.Inbox{}, 1, "a")
	accepted := 1
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: fmt.Sprintf("%d/%s", i, strings.Repeat("f", 500)), QoS: 1}}})
		cancel()
		if sa == nil {
			t.Fatalf("subscribe: %v", err)
		}
		if sa.Reasons[0] == 0x97 {
			break
		}
		if sa.Reasons[0] != 1 {
			t.Fatalf("SUBACK %#x", sa.Reasons[0])
		}
		accepted++
	}
	if accepted > 10 {
		t.Fatalf("%d filters of 500 bytes accepted in a record of 5,000", accepted)
	}
	if got := n1.b.Refused()["session_too_large"]; got != 1 {
		t.Fatalf("refused session_too_large = %d, want 1", got)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	testkit.WaitFor(t, 10*time.Second, "the session released", func() bool {
		s := n1.n.Session("big")
		return s != nil && !s.Connected
	})
	if got := len(n1.n.Session("big").Subscriptions); got != accepted {
		t.Fatalf("the record keeps %d subscriptions, want the %d accepted", got, accepted)
	}
}

// otherOwnersClaim is a node whose claims answer with a session of user
// "a", as when the record changes between the broker's owner check and
// the claim's answer.
type otherOwnersClaim struct{ *cluster.Node }

func (o otherOwnersClaim) Claim(ctx context.Context, id, owner string, resume, persistent bool, limit int) (cluster.Claimed, error) {
	c, err := o.Node.Claim(ctx, id, owner, resume, persistent, limit)
	c.Session = &cluster.Session{Owner: "a", Node: "n9", Persistent: true, Version: 5,
		Subscriptions: []cluster.Subscription{{Filter: "a/secret", QoS: 1}}}
	return c, err
}

// TestClaimOfAnotherUsersSessionRefused: a claim that brings back another
// user's session refuses the CONNECT with 0x87 (counted session_owner);
// nothing of that session is resumed for the connecting user.
func TestClaimOfAnotherUsersSessionRefused(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	n1 := joinSessions(t, "n1", nodeConfig(t, kafka, "n1", ""), func(n *cluster.Node) broker.Sessions { return otherOwnersClaim{n} })
	conn, err := net.Dial("tcp", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	expiry := uint32(300)
	_, ca, err := testkit.MQTTSession(t, conn, &paho.Connect{ClientID: "dev", Username: "b", UsernameFlag: true,
		KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}, nil)
	if err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("CONNACK %+v, %v; want 0x87", ca, err)
	}
	if got := n1.b.Refused()["session_owner"]; got != 1 {
		t.Fatalf("refused session_owner = %d, want 1", got)
	}
	if _, ok := n1.b.OwnerHere("dev"); ok {
		t.Fatal("the refused client is connected")
	}
	if f := n1.b.Filters(); slices.Contains(f, "a/secret") {
		t.Fatalf("the other user's session was put here: filters %v", f)
	}
}

// TestMQTT311SessionExpiresClusterWide: a persistent MQTT 3.1.1 session has
// no expiry interval of its own; the cluster keeps it for
// max_session_expiry, as one node does, not for good (every matching
// publish would have queued a record for it in Kafka for ever).
func TestMQTT311SessionExpiresClusterWide(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	cfg := nodeConfig(t, kafka, "n1", "")
	cfg.Broker.MaxSessionExpiry = 2 * time.Second
	n1 := joinSessions(t, "n1", cfg, shareNode)
	conn, err := net.Dial("tcp", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Keepalive: 30, ClientIdentifier: "old311"}}
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK % x, %v", ack, err)
	}
	testkit.WaitFor(t, 10*time.Second, "the session held", func() bool {
		s := n1.n.Session("old311")
		return s != nil && s.Connected
	})
	conn.Close()
	testkit.WaitFor(t, 10*time.Second, "the session offline", func() bool {
		s := n1.n.Session("old311")
		return s != nil && !s.Connected
	})
	if s := n1.n.Session("old311"); s.Expiry != 2 {
		t.Fatalf("the session's record keeps it %d s, want max_session_expiry (2 s)", s.Expiry)
	}
	testkit.WaitFor(t, 20*time.Second, "the session's end", func() bool { return n1.n.Session("old311") == nil })
}

// recordAfterCheck is a node whose record of client id, once the broker
// has checked it at CONNECT, is another user's connection: as when that
// user's record comes in between the check and the record of this
// connection.
type recordAfterCheck struct {
	*cluster.Node
	checked atomic.Bool
}

func (r *recordAfterCheck) Session(id string) *cluster.Session {
	if !r.checked.Swap(true) {
		return r.Node.Session(id)
	}
	return &cluster.Session{Owner: "a", Node: "n9", Connected: true, Persistent: true, Version: 5}
}

// TestRecordOfAnotherUserAfterTheCheck: another user's connection recorded
// between the CONNECT's owner check and the record of this connection was
// first in the topic: this connection is ended with DISCONNECT 0x87
// (counted session_owner) and writes no record of its own.
func TestRecordOfAnotherUserAfterTheCheck(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	var nodeOf *cluster.Node
	n1 := joinSessions(t, "n1", nodeConfig(t, kafka, "n1", ""), func(n *cluster.Node) broker.Sessions {
		nodeOf = n
		return &recordAfterCheck{Node: n}
	})
	conn, err := net.Dial("tcp", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	expiry := uint32(300)
	_, ca, err := testkit.MQTTSession(t, conn, &paho.Connect{ClientID: "dev", Username: "b", UsernameFlag: true,
		KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}, nil)
	if ca == nil {
		t.Fatalf("CONNACK: %v", err)
	}
	testkit.WaitFor(t, 10*time.Second, "the connection refused", func() bool { return n1.b.Refused()["session_owner"] == 1 })
	testkit.WaitFor(t, 10*time.Second, "the connection ended here", func() bool {
		_, ok := n1.b.OwnerHere("dev")
		return !ok
	})
	if s := nodeOf.Session("dev"); s != nil {
		t.Fatalf("a record of the refused connection was written: %+v", s)
	}
}
