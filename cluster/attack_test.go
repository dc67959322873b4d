package cluster_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestCrossNodeACL: a subscriber on another node gets only what the ACL
// lets it read, live or retained, as on the publisher's node.
func TestCrossNodeACL(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	const acl = `
[[broker.acl]]
permission = "deny"
clientid = "spy"
action = "subscribe"
topics = ["secret/#"]
[[broker.acl]]
permission = "allow"
action = "all"
topics = ["#"]
`
	n1, n2, n3 := joinWith(t, kafka, "n1", acl), joinWith(t, kafka, "n2", acl), joinWith(t, kafka, "n3", acl)
	spy := &testkit.Inbox{}
	testkit.Subscriber(t, n2.addr, "spy", 0, spy, 1, "#")
	routed(t, n1, 1)
	pub := testkit.MQTTClient(t, n1.addr, "pub", nil)
	publish(t, pub, "secret/a", "secret")
	publish(t, pub, "open/a", "open")
	testkit.WaitFor(t, 10*time.Second, "the open message on n2", func() bool { return len(spy.Payloads()) >= 1 })
	testkit.Settle(t, n2.addr, "open/settle", spy)
	if got := spy.Payloads(); strings.Join(got, ",") != "open" {
		t.Fatalf("spy on n2 got %q, want only \"open\"", got)
	}

	testkit.PublishRetained(t, pub, "secret/r", "secret retained")
	testkit.PublishRetained(t, pub, "open/r", "open retained")
	testkit.WaitFor(t, 10*time.Second, "both retained messages on n3", func() bool {
		return len(testkit.Retained(t, n3.addr, "+/r")) == 2
	})
	spy3 := &testkit.Inbox{}
	testkit.Subscriber(t, n3.addr, "spy", 0, spy3, 1, "#")
	testkit.Settle(t, n3.addr, "open/settle", spy3)
	if got := spy3.Payloads(); strings.Join(got, ",") != "open retained" {
		t.Fatalf("spy on n3 got %q, want only \"open retained\"", got)
	}
}
