package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// sessionClient connects an MQTT 5 client to addr with client id and
// session expiry (clean start only when 0); onDisconnect gets the server's
// DISCONNECT.
func sessionClient(t testing.TB, addr, id string, expiry uint32, will *paho.WillMessage, willDelay uint32,
	box *testkit.Inbox, onDisconnect func(*paho.Disconnect)) (*paho.Client, *paho.Connack, net.Conn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cc := paho.ClientConfig{ClientID: id, Conn: conn, OnServerDisconnect: onDisconnect}
	if box != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { box.Add(pr.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cc)
	cp := &paho.Connect{ClientID: id, CleanStart: expiry == 0, KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	if will != nil {
		cp.WillMessage = will
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &willDelay}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s to %s: %v %+v", id, addr, err, ca)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return c, ca, conn
}

func subscribe(t testing.TB, c *paho.Client, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
}

// offlineOn waits until n sees want sessions queued in Kafka.
func (n *clusterNode) offlineOn(t testing.TB, want int64) {
	t.Helper()
	// Generous: hundreds of releases, each a Kafka round trip before its
	// record, on a machine that runs the rest of the suite alongside.
	var got int64
	defer func() {
		if t.Failed() {
			t.Logf("%s saw %d offline sessions last", n.name, got)
		}
	}()
	testkit.WaitFor(t, 60*time.Second, fmt.Sprintf("%d offline sessions seen by %s", want, n.name), func() bool {
		got = n.status(t).SessionsOffline
		return got == want
	})
}

// connections is how many MQTT clients n has, as its heartbeat tells.
func (n *clusterNode) connections(t testing.TB) int64 {
	t.Helper()
	for _, m := range n.status(t).Nodes {
		if m.ID == n.name {
			return m.Connections
		}
	}
	t.Fatalf("%s does not list itself", n.name)
	return 0
}

// publishSeq publishes n QoS 1 messages 0..n-1 to topic and returns them.
func publishSeq(t testing.TB, c *paho.Client, topic string, n int) []string {
	t.Helper()
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprint(i)
		if r := testkit.Publish(t, c, topic, 1, []byte(want[i])); r.ReasonCode != 0 {
			t.Fatalf("PUBACK %d", r.ReasonCode)
		}
	}
	return want
}

// TestClusterSessions runs #17's scenarios on three `mqkafka serve`
// processes: a persistent session resumed on another node with what was
// queued for it, takeover across nodes (MQTT 5 and 3.1.1), expiry and a
// delayed will cluster-wide, and a node killed while it held an offline
// session.
func TestClusterSessions(t *testing.T) {
	kc, kafka := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "src"))
	nodes := []*clusterNode{clusterNodeConfig(t, kafka, "n1"), clusterNodeConfig(t, kafka, "n2"), clusterNodeConfig(t, kafka, "n3")}
	for _, n := range nodes {
		n.start(t)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		testkit.WaitFor(t, 20*time.Second, n.name+" to see the three nodes up", func() bool { return n.sees(t, "n1", "n2", "n3") })
	}

	t.Run("ResumeOnAnotherNodeInOrder", func(t *testing.T) {
		c, _, _ := sessionClient(t, n1.mqtt, "resume", 300, nil, 0, &testkit.Inbox{}, nil)
		subscribe(t, c, "resume/#")
		_ = c.Disconnect(&paho.Disconnect{})
		n2.offlineOn(t, 1)
		want := publishSeq(t, testkit.MQTTClient(t, n2.mqtt, "resume-pub", nil), "resume/a", 500)
		box := &testkit.Inbox{}
		c, ca, _ := sessionClient(t, n3.mqtt, "resume", 300, nil, 0, box, nil)
		if !ca.SessionPresent {
			t.Fatal("session present = 0 on n3")
		}
		testkit.WaitFor(t, 30*time.Second, "500 queued messages on n3", func() bool { return box.Len() >= 500 })
		if got := box.Payloads(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("n3 got %d messages, not the 500 in order", len(got))
		}
		// The subscription came along: a publish now reaches it live.
		n1.routes(t, 1)
		testkit.Publish(t, testkit.MQTTClient(t, n1.mqtt, "resume-pub2", nil), "resume/b", 1, []byte("live"))
		testkit.WaitFor(t, 10*time.Second, "a live publish on n3", func() bool { return box.Len() == 501 })
		_ = c.Disconnect(&paho.Disconnect{})
		n1.offlineOn(t, 1)
		c, _, _ = sessionClient(t, n3.mqtt, "resume", 0, nil, 0, nil, nil) // clean start ends it
		_ = c.Disconnect(&paho.Disconnect{})
		n1.offlineOn(t, 0)
	})

	t.Run("TakeoverMQTT5", func(t *testing.T) {
		got := make(chan byte, 1)
		sessionClient(t, n1.mqtt, "twice", 300, nil, 0, nil, func(d *paho.Disconnect) { got <- d.ReasonCode })
		c2, _, _ := sessionClient(t, n2.mqtt, "twice", 300, nil, 0, nil, nil)
		select {
		case code := <-got:
			if code != 0x8E {
				t.Fatalf("the connection on n1 got DISCONNECT 0x%02X, want 0x8E", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the connection on n1 got no DISCONNECT")
		}
		if r := testkit.Publish(t, c2, "twice/x", 1, []byte("x")); r.ReasonCode != 0 {
			t.Fatalf("the connection on n2 is not usable: PUBACK %d", r.ReasonCode)
		}
		_ = c2.Disconnect(&paho.Disconnect{})
	})

	t.Run("TakeoverMQTT311", func(t *testing.T) {
		connect := func(addr string) net.Conn {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			var buf bytes.Buffer
			testkit.RawConnect(t, &buf, 4, "twice311")
			if _, err := conn.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			ack := make([]byte, 4)
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
				t.Fatalf("CONNACK % x: %v", ack, err)
			}
			return conn
		}
		old := connect(n1.mqtt)
		connect(n3.mqtt)
		_ = old.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := old.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("the 3.1.1 connection on n1 was not closed: read %d, %v", n, err)
		}
	})

	t.Run("ExpiryAndDelayedWillOnce", func(t *testing.T) {
		wills := &testkit.Inbox{}
		testkit.Subscriber(t, n2.mqtt, "will-watch", 0, wills, 1, "will/#")
		n1.routes(t, 1)
		sessions := n2.status(t).Sessions
		_, _, conn := sessionClient(t, n1.mqtt, "expiring", 2, &paho.WillMessage{Topic: "will/expiring", QoS: 1, Payload: []byte("gone")}, 1, nil, nil)
		conn.Close() // no DISCONNECT: the will is due
		gone := time.Now()
		testkit.WaitFor(t, 10*time.Second, "the will on n2", func() bool { return wills.Len() >= 1 })
		testkit.WaitFor(t, 10*time.Second, "the session's expiry", func() bool { return time.Since(gone) > 3*time.Second })
		if wills.Len() != 1 {
			t.Fatalf("the will was published %d times", wills.Len())
		}
		c, ca, _ := sessionClient(t, n3.mqtt, "expiring", 2, nil, 0, nil, nil)
		if ca.SessionPresent {
			t.Fatal("session present = 1 after the session expired")
		}
		_ = c.Disconnect(&paho.Disconnect{})
		if wills.Len() != 1 {
			t.Fatalf("the will was published %d times", wills.Len())
		}
		// Ended in the background otherwise, while the next subtests
		// count the offline sessions.
		for _, n := range nodes {
			testkit.WaitFor(t, 20*time.Second, "the session's end seen by "+n.name, func() bool { return n.status(t).Sessions == sessions })
		}
	})

	t.Run("ReleaseDoesNotWaitForKafka", func(t *testing.T) {
		before := n2.status(t).SessionsOffline
		conns := n1.connections(t)
		c, _, _ := sessionClient(t, n1.mqtt, "releasing", 300, nil, 0, nil, nil)
		subscribe(t, c, "releasing/#")
		testkit.WaitFor(t, 10*time.Second, "n1 to count the connection", func() bool { return n1.connections(t) == conns+1 })
		// Kafka takes no record of the queues topic until hold is closed:
		// the release's queue mark waits for it.
		hold := make(chan struct{})
		var released atomic.Bool
		kc.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
			// A control that never handles a request stays for the rest
			// of the test, and a produce that passes through SleepControl
			// can be overtaken by the producer's next one: the idempotent
			// producer then fails with an out-of-order sequence.
			if released.Load() {
				kc.DropControl()
				return nil, nil, false
			}
			for _, tp := range req.(*kmsg.ProduceRequest).Topics {
				if tp.Topic == "mqkafka.t.queues" {
					kc.SleepControl(func() { <-hold })
				}
			}
			return nil, nil, false
		})
		_ = c.Disconnect(&paho.Disconnect{})
		// The connection's goroutine ends at once (below the release's
		// 10 s wait for the mark), though Kafka has not taken the mark.
		testkit.WaitFor(t, 5*time.Second, "the connection to end on n1 while Kafka holds its queue mark", func() bool {
			return n1.connections(t) == conns
		})
		released.Store(true)
		close(hold)
		n2.offlineOn(t, before+1)
		c, ca, _ := sessionClient(t, n2.mqtt, "releasing", 300, nil, 0, nil, nil)
		if !ca.SessionPresent {
			t.Fatal("session present = 0 on n2 after a release that waited for Kafka")
		}
		_ = c.Disconnect(&paho.Disconnect{})
		n2.offlineOn(t, before+1)
	})

	t.Run("PublishRightAfterResume", func(t *testing.T) {
		// n2 learns that a session resumed on n3 one Kafka round trip
		// after its CONNACK: what n2 takes meanwhile still reaches it.
		const sessions = 200
		before := n2.status(t).SessionsOffline
		id := func(i int) string { return fmt.Sprintf("right-%d", i) }
		for i := range sessions {
			c, _, _ := sessionClient(t, n1.mqtt, id(i), 300, nil, 0, nil, nil)
			subscribe(t, c, id(i))
			_ = c.Disconnect(&paho.Disconnect{})
		}
		n2.offlineOn(t, before+sessions)
		pub := testkit.MQTTClient(t, n2.mqtt, "right-pub", nil)
		box := &testkit.Inbox{}
		resumed := make([]*paho.Client, sessions)
		for i := range sessions {
			c, ca, _ := sessionClient(t, n3.mqtt, id(i), 300, nil, 0, box, nil)
			if !ca.SessionPresent {
				t.Fatalf("session present = 0 for %s on n3", id(i))
			}
			resumed[i] = c
			if r := testkit.Publish(t, pub, id(i), 1, []byte(id(i))); r.ReasonCode != 0 {
				t.Fatalf("PUBACK %d", r.ReasonCode)
			}
		}
		testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("the %d publishes made right after each resume", sessions), func() bool {
			got := map[string]bool{}
			for _, p := range box.Payloads() {
				got[p] = true
			}
			return len(got) == sessions
		})
		if extra := box.Len() - sessions; extra > 0 {
			t.Logf("%d of the %d delivered twice", extra, sessions)
		}
		for _, c := range resumed {
			_ = c.Disconnect(&paho.Disconnect{})
		}
		n2.offlineOn(t, before+sessions)
	})

	t.Run("HolderKilledWhileOffline", func(t *testing.T) {
		before := n2.status(t).SessionsOffline
		c, _, _ := sessionClient(t, n1.mqtt, "survivor", 300, nil, 0, nil, nil)
		subscribe(t, c, "survivor/#")
		_ = c.Disconnect(&paho.Disconnect{})
		n2.offlineOn(t, before+1)
		want := publishSeq(t, testkit.MQTTClient(t, n2.mqtt, "survivor-pub", nil), "survivor/a", 100)

		// What n1 holds when it dies: a connection with a will (delay 1 s,
		// expiry 3 s), one that ended with a will still delayed (2 s), a
		// connected session expiring 2 s after its end, and one resumed
		// on n3 without n1's hand-over.
		wills := &testkit.Inbox{}
		routes := n2.status(t).Routes
		testkit.Subscriber(t, n3.mqtt, "will-watch-n3", 0, wills, 1, "will/#")
		n2.routes(t, routes+1)
		sessions := n3.status(t).Sessions
		sessionClient(t, n1.mqtt, "doomed", 3, &paho.WillMessage{Topic: "will/doomed", QoS: 1, Payload: []byte("doomed")}, 1, nil, nil)
		_, _, conn := sessionClient(t, n1.mqtt, "delayed", 300, &paho.WillMessage{Topic: "will/delayed", QoS: 1, Payload: []byte("delayed")}, 2, nil, nil)
		sessionClient(t, n1.mqtt, "stuck", 2, nil, 0, nil, nil)
		sessionClient(t, n1.mqtt, "handover", 300, nil, 0, nil, nil)
		testkit.WaitFor(t, 20*time.Second, "n3 to see n1's four new sessions", func() bool { return n3.status(t).Sessions == sessions+4 })
		conn.Close() // no DISCONNECT: its will is due in 2 s
		n2.offlineOn(t, before+2)
		n1.p.kill()
		box := &testkit.Inbox{}
		_, ca, _ := sessionClient(t, n3.mqtt, "survivor", 300, nil, 0, box, nil)
		if !ca.SessionPresent {
			t.Fatal("session present = 0 on n3 after n1 was killed")
		}
		testkit.WaitFor(t, 30*time.Second, "the 100 queued messages on n3", func() bool { return box.Len() >= 100 })
		if got := box.Payloads(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("n3 got %d messages, not the 100 in order", len(got))
		}

		if _, ca, _ := sessionClient(t, n3.mqtt, "handover", 300, nil, 0, nil, nil); !ca.SessionPresent {
			t.Fatal("session present = 0 on n3 for a session connected on n1 when it was killed")
		}
		if got := n3.status(t).SessionsNotHandedOver; got != 1 {
			t.Fatalf("n3 counts %d sessions resumed without a hand-over, want 1", got)
		}
		// doomed and stuck end once n1 is shown down and their expiry
		// has passed; the wills of doomed and delayed arrive, once each.
		testkit.WaitFor(t, 30*time.Second, "the sessions n1 held connected to expire", func() bool {
			return n3.status(t).Sessions == sessions+2
		})
		testkit.WaitFor(t, 10*time.Second, "both wills on n3", func() bool { return wills.Len() >= 2 })
		got := wills.Payloads()
		sort.Strings(got)
		if strings.Join(got, ",") != "delayed,doomed" {
			t.Fatalf("wills received on n3: %q, want delayed and doomed once each", got)
		}
	})
}

// TestClusterSessionsThroughHAProxy: a device that knows only the load
// balancer's address resumes its persistent session wherever it lands,
// and a second connection with its client id ends the first.
func TestClusterSessionsThroughHAProxy(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "src"))
	nodes := []*clusterNode{clusterNodeConfig(t, kafka, "n1"), clusterNodeConfig(t, kafka, "n2"), clusterNodeConfig(t, kafka, "n3")}
	for _, n := range nodes {
		n.start(t)
	}
	for _, n := range nodes {
		testkit.WaitFor(t, 20*time.Second, n.name+" to see the three nodes up", func() bool { return n.sees(t, "n1", "n2", "n3") })
	}
	lb := startHAProxy(t, nodes)

	c, _, _ := sessionClient(t, lb, "lb-resume", 300, nil, 0, nil, nil)
	subscribe(t, c, "lbs/#")
	_ = c.Disconnect(&paho.Disconnect{})
	for _, n := range nodes {
		n.offlineOn(t, 1)
	}
	want := publishSeq(t, testkit.MQTTClient(t, lb, "lb-resume-pub", nil), "lbs/a", 300)
	box := &testkit.Inbox{}
	got := make(chan byte, 1)
	_, ca, _ := sessionClient(t, lb, "lb-resume", 300, nil, 0, box, func(d *paho.Disconnect) { got <- d.ReasonCode })
	if !ca.SessionPresent {
		t.Fatal("session present = 0 through the balancer")
	}
	testkit.WaitFor(t, 30*time.Second, "300 queued messages", func() bool { return box.Len() >= 300 })
	if p := box.Payloads(); strings.Join(p, ",") != strings.Join(want, ",") {
		t.Fatalf("got %d messages, not the 300 in order", len(p))
	}

	sessionClient(t, lb, "lb-resume", 300, nil, 0, nil, nil)
	select {
	case code := <-got:
		if code != 0x8E {
			t.Fatalf("the first connection got DISCONNECT 0x%02X, want 0x8E", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first connection got no DISCONNECT")
	}
}

// ownerClient connects an MQTT 5 client with user name user and a
// persistent session to addr, and returns it with its CONNACK's reason
// code; onDisconnect gets the server's DISCONNECT.
func ownerClient(t testing.TB, addr, id, user string, box *testkit.Inbox, onDisconnect func(*paho.Disconnect)) (*paho.Client, byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cc := paho.ClientConfig{ClientID: id, Conn: conn, OnServerDisconnect: onDisconnect}
	if box != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { box.Add(pr.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cc)
	expiry := uint32(300)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, Username: user, UsernameFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if ca == nil {
		t.Fatalf("connect %s as %s to %s: %v", id, user, addr, err)
	}
	return c, ca.ReasonCode
}

// TestClusterSessionOwnerRace: user b connecting on n2 with user a's
// client id before n2 has read a's record, a moment after a connected on
// n1, is refused with 0x87 and does not end a's connection; a same-user
// takeover still ends it with 0x8E. Should n1 write a's record after n2
// wrote b's (a loaded machine), b's is first in the topic and a's
// connection is the one refused: one of the two always stays, never both.
func TestClusterSessionOwnerRace(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "src"))
	n1, n2 := clusterNodeConfig(t, kafka, "n1"), clusterNodeConfig(t, kafka, "n2")
	n1.start(t)
	n2.start(t)
	for _, n := range []*clusterNode{n1, n2} {
		testkit.WaitFor(t, 20*time.Second, n.name+" to see the two nodes up", func() bool { return n.sees(t, "n1", "n2") })
	}
	const rounds = 5
	bFirst := 0
	for i := range rounds {
		id := fmt.Sprintf("owned-%d", i)
		aCodes := make(chan byte, 1)
		box := &testkit.Inbox{}
		a, code := ownerClient(t, n1.mqtt, id, "a", box, func(d *paho.Disconnect) { aCodes <- d.ReasonCode })
		if code != 0 {
			t.Fatalf("a's CONNACK 0x%02X", code)
		}
		subscribe(t, a, id+"/#")
		bCodes := make(chan byte, 1)
		b, code := ownerClient(t, n2.mqtt, id, "b", nil, func(d *paho.Disconnect) { bCodes <- d.ReasonCode })
		if code == 0 {
			// n2 had not read a's record. The connection whose record is
			// second in the sessions topic is refused: b's, unless n1
			// wrote a's record after n2 wrote b's (a loaded machine).
			select {
			case code = <-bCodes:
			case code = <-aCodes:
				if code != 0x87 {
					t.Fatalf("%s: a got DISCONNECT 0x%02X, want 0x87", id, code)
				}
				if r := testkit.Publish(t, b, id+"/b", 1, []byte("b's")); r.ReasonCode != 0 {
					t.Fatalf("%s: a was refused, and b's connection is not usable: PUBACK %d", id, r.ReasonCode)
				}
				select {
				case code := <-bCodes:
					t.Fatalf("%s: both refused (b: 0x%02X)", id, code)
				default:
				}
				bFirst++
				continue
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: b, CONNACK 0, got no DISCONNECT and a none either", id)
			}
		}
		if code != 0x87 {
			t.Fatalf("%s: b got 0x%02X, want 0x87", id, code)
		}
		testkit.Publish(t, testkit.MQTTClient(t, n1.mqtt, id+"-pub", nil), id+"/x", 1, []byte("still a's"))
		testkit.WaitFor(t, 10*time.Second, id+": a publish on a's connection", func() bool { return box.Len() == 1 })
		select {
		case code := <-aCodes:
			t.Fatalf("%s: a's connection got DISCONNECT 0x%02X", id, code)
		default:
		}
		// The same user takes the session over.
		c, code := ownerClient(t, n2.mqtt, id, "a", nil, nil)
		if code != 0 {
			t.Fatalf("%s: a's takeover on n2 got CONNACK 0x%02X", id, code)
		}
		select {
		case code := <-aCodes:
			if code != 0x8E {
				t.Fatalf("%s: a's connection on n1 got DISCONNECT 0x%02X, want 0x8E", id, code)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: a's connection on n1 got no DISCONNECT", id)
		}
		_ = c.Disconnect(&paho.Disconnect{})
	}
	if bFirst == rounds {
		t.Fatalf("b's record was first in all %d rounds: a's connection was never seen kept", rounds)
	}
}
