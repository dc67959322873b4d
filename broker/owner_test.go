package broker

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// ownerConfig has users alice, bob and ops (password "pw"), anonymous
// clients, and only alice may subscribe to alerts/#, unless acl replaces
// the rules.
func ownerConfig(t *testing.T, dir, extra, acl string) conf.Broker {
	t.Helper()
	h := string(mustHash(t, "pw"))
	if acl == "" {
		acl = `[[broker.acl]]
permission = "allow"
username = "alice"
action = "subscribe"
topics = ["alerts/#"]
[[broker.acl]]
permission = "allow"
username = "bob"
action = "subscribe"
topics = ["bob/#"]
[[broker.acl]]
permission = "allow"
action = "publish"
topics = ["#"]
`
	}
	text := fmt.Sprintf("[broker]\ndata_dir = %q\nlisteners = [{ address = \"127.0.0.1:0\" }]\n%s\n[broker.auth]\nallow_anonymous = true\n", dir, extra)
	for _, u := range []string{"alice", "bob", "ops"} {
		text += fmt.Sprintf("[[broker.auth.users]]\nusername = %q\npassword_hash = %q\n", u, h)
	}
	return brokerConfig(t, text+acl)
}

// connect5 opens an MQTT 5 session as user ("" anonymous); a session that
// is not clean lives an hour after its connection.
func connect5(t *testing.T, addr, id, user string, clean bool, onMsg func(*paho.Publish)) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	cp := &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30}
	if user != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = user, true, []byte("pw"), true
	}
	if !clean {
		expiry := uint32(3600)
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	return testkit.MQTTSession(t, dial(t, addr), cp, onMsg)
}

func mustConnect5(t *testing.T, addr, id, user string, clean bool, onMsg func(*paho.Publish)) (*paho.Client, *paho.Connack) {
	t.Helper()
	c, ca, err := connect5(t, addr, id, user, clean, onMsg)
	if err != nil {
		t.Fatalf("%s as %q: %v (connack %+v)", id, user, err, ca)
	}
	return c, ca
}

func waitOffline(t *testing.T, b *Broker, id string) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, id+" to go offline", func() bool {
		cl, ok := b.srv.Clients.Get(id)
		return ok && cl.Closed()
	})
}

// aliceAway leaves alice's persistent session "dev1", subscribed to
// alerts/#, offline with alerts/fire queued; it returns ops's client.
func aliceAway(t *testing.T, b *Broker) *paho.Client {
	t.Helper()
	addr := b.Addrs()[0]
	alice, _ := mustConnect5(t, addr, "dev1", "alice", false, nil)
	if rc := testkit.Subscribe(t, alice, "alerts/#"); rc != 1 {
		t.Fatalf("alice's subscription: reason %#x", rc)
	}
	if err := alice.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	waitOffline(t, b, "dev1")
	ops, _ := mustConnect5(t, addr, "ops", "ops", true, nil)
	pub(t, ops, "alerts/fire", 1, false, "smoke")
	return ops
}

// refuse5 asserts that user's CONNECT with client id dev1 is refused as not
// authorized, for a resume and for a clean start.
func refuse5(t *testing.T, addr, user string) {
	t.Helper()
	for _, clean := range []bool{false, true} {
		var box inbox
		_, ca, err := connect5(t, addr, "dev1", user, clean, box.add)
		if err == nil || ca == nil || ca.ReasonCode != packets.ErrNotAuthorized.Code {
			t.Fatalf("%q with alice's client id (clean %v): connack %+v, err %v; want reason %#x",
				user, clean, ca, err, packets.ErrNotAuthorized.Code)
		}
		if got := box.got(); len(got) != 0 {
			t.Fatalf("%q, refused, received %v", user, got)
		}
	}
}

// TestSessionOwner: another user (or an anonymous client) cannot resume,
// discard or take over alice's session, offline or connected, although it
// knows her client id; alice then resumes it with what was queued. Fails
// without the owner check: bob gets the session and alerts/fire.
func TestSessionOwner(t *testing.T) {
	b, _ := startBroker(t, ownerConfig(t, t.TempDir(), "", ""))
	addr := b.Addrs()[0]
	ops := aliceAway(t, b)
	bob, _ := mustConnect5(t, addr, "bobs", "bob", true, nil)
	if rc := testkit.Subscribe(t, bob, "alerts/#"); rc != packets.ErrNotAuthorized.Code {
		t.Fatalf("bob's own subscription to alerts/#: reason %#x, want %#x", rc, packets.ErrNotAuthorized.Code)
	}
	refuse5(t, addr, "bob")
	refuse5(t, addr, "")
	if n := b.Refused()["session_owner"]; n != 4 {
		t.Fatalf("refused session_owner = %d, want 4", n)
	}

	var box inbox
	_, ca := mustConnect5(t, addr, "dev1", "alice", false, box.add)
	if !ca.SessionPresent {
		t.Fatal("alice's session is gone")
	}
	testkit.WaitFor(t, 5*time.Second, "the queued message", func() bool { return len(box.got()) == 1 })

	// Connected: bob's takeover is refused and alice keeps her connection.
	refuse5(t, addr, "bob")
	pub(t, ops, "alerts/two", 1, false, "2")
	testkit.WaitFor(t, 5*time.Second, "alerts/two", func() bool { return len(box.got()) == 2 })
	if got, want := box.got(), []string{"alerts/fire=smoke", "alerts/two=2"}; !slices.Equal(got, want) {
		t.Fatalf("alice got %v, want %v", got, want)
	}
	if cl, ok := b.srv.Clients.Get("dev1"); !ok || cl.Closed() || string(cl.Properties.Username) != "alice" {
		t.Fatal("alice's connection did not survive bob's attempt")
	}
	// The owner takes over her own session.
	_, ca = mustConnect5(t, addr, "dev1", "alice", false, nil)
	if !ca.SessionPresent {
		t.Fatal("alice could not take over her own session")
	}
}

// TestSessionOwnerAfterRestart: the owner is persisted with the session.
func TestSessionOwnerAfterRestart(t *testing.T) {
	cfg := ownerConfig(t, t.TempDir(), "", "")
	b1, _ := startBroker(t, cfg)
	aliceAway(t, b1)
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2, _ := startBroker(t, cfg)
	addr := b2.Addrs()[0]
	refuse5(t, addr, "bob")
	var box inbox
	_, ca := mustConnect5(t, addr, "dev1", "alice", false, box.add)
	if !ca.SessionPresent {
		t.Fatal("alice's session is gone")
	}
	testkit.WaitFor(t, 5*time.Second, "the queued message", func() bool { return len(box.got()) == 1 })
	if got := box.got()[0]; got != "alerts/fire=smoke" {
		t.Fatalf("alice got %q", got)
	}
}

// TestSessionOwnerCheckOff: with session_owner_check = false bob may take
// alice's session, but gets none of its messages his ACL denies him, queued
// or new. Fails without the check on resumed in-flight messages.
func TestSessionOwnerCheckOff(t *testing.T) {
	b, _ := startBroker(t, ownerConfig(t, t.TempDir(), "session_owner_check = false", ""))
	addr := b.Addrs()[0]
	ops := aliceAway(t, b)
	var box inbox
	bob, ca := mustConnect5(t, addr, "dev1", "bob", false, box.add)
	if !ca.SessionPresent {
		t.Fatal("session not taken over")
	}
	pub(t, ops, "alerts/two", 1, false, "2")
	if rc := testkit.Subscribe(t, bob, "bob/#"); rc != 1 {
		t.Fatalf("bob's subscription: reason %#x", rc)
	}
	pub(t, ops, "bob/mark", 1, false, "end")
	testkit.WaitFor(t, 5*time.Second, "the marker", func() bool { return slices.Contains(box.got(), "bob/mark=end") })
	if got, want := box.got(), []string{"bob/mark=end"}; !slices.Equal(got, want) {
		t.Fatalf("bob got %v, want %v", got, want)
	}
	if n := b.Drops()["not_authorized_delivery"]; n != 2 {
		t.Fatalf("not_authorized_delivery = %d, want 2 (queued alerts/fire, new alerts/two)", n)
	}
}

// TestQueuedMessageCheckedOnResume: a message queued while alice was
// allowed its topic is not delivered once a restart's ACL denies it. Fails
// without the check on resumed in-flight messages.
func TestQueuedMessageCheckedOnResume(t *testing.T) {
	dir := t.TempDir()
	b1, _ := startBroker(t, ownerConfig(t, dir, "", ""))
	aliceAway(t, b1)
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2, _ := startBroker(t, ownerConfig(t, dir, "", `[[broker.acl]]
permission = "deny"
action = "subscribe"
topics = ["alerts/fire"]
[[broker.acl]]
permission = "allow"
topics = ["alerts/#"]
`))
	addr := b2.Addrs()[0]
	var box inbox
	_, ca := mustConnect5(t, addr, "dev1", "alice", false, box.add)
	if !ca.SessionPresent {
		t.Fatal("alice's session is gone")
	}
	ops, _ := mustConnect5(t, addr, "ops", "ops", true, nil)
	pub(t, ops, "alerts/mark", 1, false, "end")
	testkit.WaitFor(t, 5*time.Second, "the marker", func() bool { return slices.Contains(box.got(), "alerts/mark=end") })
	if got, want := box.got(), []string{"alerts/mark=end"}; !slices.Equal(got, want) {
		t.Fatalf("alice got %v, want %v", got, want)
	}
	if n := b2.Drops()["not_authorized_delivery"]; n != 1 {
		t.Fatalf("not_authorized_delivery = %d, want 1", n)
	}
}

// TestRetainedCheckedOnDelivery: a retained message is not delivered to a
// subscriber whose ACL denies its topic, though it may subscribe to a filter
// covering it.
func TestRetainedCheckedOnDelivery(t *testing.T) {
	b, _ := startBroker(t, ownerConfig(t, t.TempDir(), "", `[[broker.acl]]
permission = "deny"
username = "bob"
action = "subscribe"
topics = ["alerts/secret"]
[[broker.acl]]
permission = "allow"
topics = ["alerts/#"]
`))
	addr := b.Addrs()[0]
	ops, _ := mustConnect5(t, addr, "ops", "ops", true, nil)
	pub(t, ops, "alerts/secret", 1, true, "pin")
	pub(t, ops, "alerts/open", 1, true, "hello")
	var box inbox
	bob, _ := mustConnect5(t, addr, "bobs", "bob", true, box.add)
	if rc := testkit.Subscribe(t, bob, "alerts/#"); rc != 1 {
		t.Fatalf("bob's subscription: reason %#x", rc)
	}
	testkit.WaitFor(t, 5*time.Second, "the denial", func() bool { return b.Drops()["not_authorized_delivery"] == 1 })
	testkit.WaitFor(t, 5*time.Second, "alerts/open", func() bool { return len(box.got()) > 0 })
	if got, want := box.got(), []string{"alerts/open=hello"}; !slices.Equal(got, want) {
		t.Fatalf("bob got %v, want %v", got, want)
	}
}

// connect311 connects client id dev1 as user and returns the CONNACK.
func connect311(t *testing.T, addr, user string, clean bool) (*rawClient, packets.Packet) {
	t.Helper()
	r := rawOn(t, dial(t, addr), 4)
	r.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: clean, Keepalive: 30, ClientIdentifier: "dev1",
			UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte("pw")}})
	ack, err := r.read()
	if err != nil || ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("%s: no CONNACK: %+v, %v", user, ack, err)
	}
	return r, ack
}

// TestSessionOwnerMQTT311: as TestSessionOwner, for MQTT 3.1.1 clients,
// which are refused with return code 5 (not authorized).
func TestSessionOwnerMQTT311(t *testing.T) {
	b, _ := startBroker(t, ownerConfig(t, t.TempDir(), "", ""))
	addr := b.Addrs()[0]
	alice, ack := connect311(t, addr, "alice", false)
	if ack.ReasonCode != 0 {
		t.Fatalf("alice refused: %#x", ack.ReasonCode)
	}
	alice.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "alerts/#", Qos: 1}}})
	if sa, err := alice.read(); err != nil || sa.FixedHeader.Type != packets.Suback || !bytes.Equal(sa.ReasonCodes, []byte{1}) {
		t.Fatalf("alice's SUBACK %+v, %v", sa, err)
	}
	_ = alice.conn.Close()
	waitOffline(t, b, "dev1")
	ops, _ := mustConnect5(t, addr, "ops", "ops", true, nil)
	pub(t, ops, "alerts/fire", 1, false, "smoke")

	for _, clean := range []bool{false, true} {
		bob, ack := connect311(t, addr, "bob", clean)
		if ack.ReasonCode != packets.Err3NotAuthorized.Code || ack.SessionPresent {
			t.Fatalf("bob (clean %v): return code %#x, session present %v; want %#x, false", clean, ack.ReasonCode, ack.SessionPresent, packets.Err3NotAuthorized.Code)
		}
		if pk, err := bob.read(); err == nil {
			t.Fatalf("refused bob got %+v", pk)
		}
	}
	if n := b.Refused()["session_owner"]; n != 2 {
		t.Fatalf("refused session_owner = %d, want 2", n)
	}
	alice, ack = connect311(t, addr, "alice", false)
	if ack.ReasonCode != 0 || !ack.SessionPresent {
		t.Fatalf("alice's resume: return code %#x, session present %v", ack.ReasonCode, ack.SessionPresent)
	}
	pk, err := alice.read()
	if err != nil || pk.TopicName != "alerts/fire" || string(pk.Payload) != "smoke" {
		t.Fatalf("alice got %+v, %v; want alerts/fire", pk, err)
	}
}
