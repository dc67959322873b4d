package cluster

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestRoomBoundsEveryRecord: a publish the room fits is one TooLarge takes,
// whatever its topic, as routes, nodes and queued sessions come and go; the
// room is exact for a topic every route matches while no shared filter
// widens it, and where one does (a filter the publish does not match)
// TooLarge still takes what fits.
func TestRoomBoundsEveryRecord(t *testing.T) {
	n := &Node{log: slog.New(slog.DiscardHandler), routes: newRoutes("n1"), sessions: newSessionTable("n1", time.Second),
		maxRecord: 400}
	offline := func(filter string) *Session {
		return &Session{Node: "n2", Persistent: true, Subscriptions: []Subscription{{Filter: filter, QoS: 1}}}
	}
	// check publishes on each topic, with each size of payload around the
	// limit, and counts those the room leaves to TooLarge that it takes;
	// on topic exact there must be none.
	check := func(step, exact string) (loose int) {
		t.Helper()
		room := n.Room()
		for _, topic := range []string{"t/a", "other/b", "q/1", "none"} {
			for _, origin := range []string{"c", strings.Repeat("o", 40)} {
				for size := 150; size <= 400; size++ {
					for _, retain := range []bool{false, true} {
						m := &Message{Topic: topic, Origin: origin, Payload: make([]byte, size), QoS: 1, Retain: retain}
						fits, err := room.Fits(m), n.TooLarge(m)
						switch {
						case fits && err != nil:
							t.Fatalf("%s: %s from %s, %d bytes, retain %v: the room fits it, TooLarge: %v", step, topic, origin, size, retain, err)
						case !fits && err == nil && topic == exact:
							t.Fatalf("%s: %s from %s, %d bytes, retain %v: the room does not fit what TooLarge takes", step, topic, origin, size, retain)
						case !fits && err == nil:
							loose++
						}
					}
				}
			}
		}
		return loose
	}
	wantRoom := func(step string, route, queue int) {
		t.Helper()
		if r := n.Room(); r.route != route || r.queue != queue {
			t.Fatalf("%s: room %+v, want route %d, queue %d", step, r, route, queue)
		}
	}

	wantRoom("nothing", -1, -1)
	check("nothing", "t/a")
	n.routes.set("n2", "t/#", true)
	wantRoom("a node down", -1, -1)
	n.routes.setUp("n2", true)
	wantRoom("n2 up", len("n2"), -1)
	check("n2 up", "t/a")

	const shared = "$share/group/other/#"
	n.routes.set("n3", shared, true)
	n.routes.set("n3", "$share/g/t/#", true)
	n.routes.setUp("n3", true)
	wantRoom("n3 up", len("n3")+field(len(shared))+field(len("$share/g/t/#")), -1)
	if check("n3 up", "") == 0 {
		t.Fatal("n3 up: the room fits every publish TooLarge takes; the test wants one it is wider for")
	}
	n.routes.set("n3", shared, false)
	wantRoom("a shared filter gone", len("n3")+field(len("$share/g/t/#")), -1)
	check("a shared filter gone", "")

	for i, id := range []string{"abc", "abcdef", "xyz"} {
		n.sessions.set(id, offline(fmt.Sprintf("q/%d", i)))
	}
	wantRoom("sessions queued", len("n3")+field(len("$share/g/t/#")), len("abcdef"))
	check("sessions queued", "")
	n.sessions.set("abcdef", nil)
	wantRoom("the longest id gone", len("n3")+field(len("$share/g/t/#")), len("abc"))
	n.sessions.set("abc", nil)
	wantRoom("one of two ids as long gone", len("n3")+field(len("$share/g/t/#")), len("xyz"))
	n.sessions.set("xyz", nil)
	wantRoom("the last session gone", len("n3")+field(len("$share/g/t/#")), -1)

	n.routes.setUp("n3", false)
	wantRoom("n3 down", len("n2"), -1)
	check("n3 down", "t/a")
	n.routes.set("n2", "t/#", false)
	wantRoom("no routes", -1, -1)
	if (Room{}).Fits(&Message{Topic: "t"}) {
		t.Fatal("the zero room fits a publish")
	}
}

// TestRoutesTwoSpellingsOfOneSharedFilter: a node announcing one shared
// filter with two spellings of its prefix, which the index keeps as one
// entry, keeps the entry while either is announced, and the counts behind
// Remote and Room come back to none, as the node goes down and up and the
// spellings are withdrawn in either order.
func TestRoutesTwoSpellingsOfOneSharedFilter(t *testing.T) {
	r := newRoutes("n1")
	routed := func(step string, want bool) {
		t.Helper()
		subs := r.index.Subscribers("a/x")
		if got := len(subs.Shared) > 0; got != want || (r.active.Load() > 0) != want {
			t.Fatalf("%s: routed %v (active %d), want %v", step, got, r.active.Load(), want)
		}
		if want != (r.reach.Load() >= 0) {
			t.Fatalf("%s: reach %d", step, r.reach.Load())
		}
	}
	for _, order := range [][2]string{{"$SHARE/g/a/#", "$share/g/a/#"}, {"$share/g/a/#", "$SHARE/g/a/#"}} {
		r.set("n2", order[0], true)
		r.set("n2", order[1], true)
		r.setUp("n2", true)
		routed("both announced", true)
		r.setUp("n2", false)
		routed("n2 down", false)
		r.setUp("n2", true)
		r.set("n2", order[0], false)
		routed("one withdrawn", true)
		r.setUp("n2", false)
		r.setUp("n2", true)
		routed("down and up with one", true)
		r.set("n2", order[0], true)
		r.set("n2", order[1], false)
		routed("the other withdrawn", true)
		r.set("n2", order[0], false)
		routed("both withdrawn", false)
		if r.active.Load() != 0 || len(r.loads) != 0 || len(r.spellings) != 0 {
			t.Fatalf("counts left: active %d, loads %v, spellings %v", r.active.Load(), r.loads, r.spellings)
		}
		r.setUp("n2", false)
	}
}
