package broker

import (
	"testing"

	"github.com/mqkafka/mqkafka/conf"
)

func TestFilterCovers(t *testing.T) {
	for _, tc := range []struct {
		filter, sub string
		want        bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"+/+", "a/b", true},
		{"a/b/c", "a/b", false},
		// Filters being subscribed to: covered only if every topic they match is.
		{"a/#", "a/+/c", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/b", "a/+", false},
		{"#", "#", true},
		// '$' topics are not matched by a first-level wildcard.
		{"#", "$SYS/broker/uptime", false},
		{"+/broker/#", "$SYS/broker/uptime", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"a/", "a/", true},
		{"a/+", "a/", true},
	} {
		if got := filterCovers(tc.filter, tc.sub); got != tc.want {
			t.Errorf("filterCovers(%q, %q) = %v, want %v", tc.filter, tc.sub, got, tc.want)
		}
	}
}

func TestACL(t *testing.T) {
	a := newACL([]conf.ACLRule{
		{Permission: "deny", Action: "subscribe", Topics: []string{"eq #", "$SYS/#"}},
		{Permission: "allow", Username: "admin", Action: "all", Topics: []string{"#"}},
		{Permission: "allow", Action: "publish", Topics: []string{"sensors/${clientid}/#"}},
		{Permission: "allow", Action: "subscribe", Topics: []string{"cmd/${username}/+"}},
		{Permission: "deny", ClientID: "spy", Action: "all", Topics: []string{"public/#"}},
		{Permission: "allow", Action: "all", Topics: []string{"public/#"}},
	})
	for _, tc := range []struct {
		user, client, topic string
		write, want         bool
	}{
		{"admin", "c", "anything/at/all", true, true},
		{"admin", "c", "x/+", false, true},
		{"admin", "c", "#", false, false},                  // the literal "eq #" rule comes first
		{"admin", "c", "$SYS/broker/uptime", false, false}, // and so does $SYS
		{"admin", "c", "$SYS/broker/uptime", true, false},  // "#" does not reach $ topics
		{"", "d1", "sensors/d1/temp", true, true},
		{"", "d1", "sensors/d2/temp", true, false},
		{"", "d1", "sensors/d1/temp", false, false}, // publish only
		{"u1", "x", "cmd/u1/reboot", false, true},
		{"u1", "x", "cmd/u1/+", false, true},
		{"u1", "x", "cmd/+/reboot", false, false},
		{"", "x", "cmd//reboot", false, false},   // no user name: the rule does not apply
		{"a/b", "x", "cmd/a/b/c", false, false},  // a separator in the value does not widen the filter
		{"", "+", "sensors/+/t", true, false},    // nor does a wildcard
		{"", "spy", "public/news", false, false}, // first match decides
		{"", "other", "public/news", false, true},
		{"", "other", "$share/g/public/news", false, true},
		{"", "other", "$share/g/private/x", false, false},
		{"", "other", "private/x", true, false}, // default deny
	} {
		if got := a.allowed(tc.user, tc.client, tc.topic, tc.write); got != tc.want {
			t.Errorf("allowed(user %q, client %q, %q, write %v) = %v, want %v", tc.user, tc.client, tc.topic, tc.write, got, tc.want)
		}
	}
	if newACL(nil) != nil {
		t.Error("no rules should mean no ACL")
	}
}
