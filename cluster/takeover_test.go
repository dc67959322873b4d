package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// fakeLocal is a broker as applySession uses it: one connection per
// client id, of a user, with owners checked; it records the calls that
// end a connection.
type fakeLocal struct {
	users map[string]string // client id → the user connected here
	calls []string          // "takeover id" or "refuse id"
}

func (l *fakeLocal) end(call, id string) bool {
	_, ok := l.users[id]
	delete(l.users, id)
	l.calls = append(l.calls, call+" "+id)
	return ok
}

func (l *fakeLocal) TakeOver(id string) bool { return l.end("takeover", id) }
func (l *fakeLocal) Refuse(id string) bool   { return l.end("refuse", id) }
func (l *fakeLocal) OwnerHere(id string) (string, bool) {
	user, ok := l.users[id]
	return user, ok
}
func (l *fakeLocal) Deliver(*Message) error               { return nil }
func (l *fakeLocal) Retain(*Message)                      {}
func (l *fakeLocal) Filters() []string                    { return nil }
func (l *fakeLocal) Connections() int64                   { return int64(len(l.users)) }
func (l *fakeLocal) PublishWill(string, *Message) error   { return nil }
func (l *fakeLocal) DeliverQueued(string, *Message) error { return nil }

// stage is node n1 on kfake, started but for following the cluster: the
// test hands it the records of the sessions topic, as its state consumer
// would, and reads back what it writes.
type stage struct {
	n     *Node
	local *fakeLocal
	marks int
}

func newStage(t *testing.T) *stage {
	t.Helper()
	_, addr := testkit.NewKafka(t, 0)
	n := loadedNode(t, addr, 1, "")
	st := &stage{n: n, local: &fakeLocal{users: map[string]string{}}}
	n.local = st.local
	return st
}

// loadedNode is node n1 of cluster "t" on the Kafka at addr, its internal
// topics of partitions partitions, connectorTOML added to its connector,
// loaded and closed when the test ends.
func loadedNode(t *testing.T, addr string, partitions int, connectorTOML string) *Node {
	t.Helper()
	cfg, err := conf.Parse("test.toml", fmt.Appendf(nil, `
[broker]
node = "n1"
[cluster]
name = "t"
connector = "k"
replication_factor = 1
partitions = %d
[[connectors]]
name = "k"
bootstrap_hosts = %q
%s
`, partitions, addr, connectorTOML))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{Cluster: *cfg.Cluster, Node: "n1", Connector: cfg.Connectors[0], Version: "test"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// read applies s as the next record of client id in the sessions topic.
func (st *stage) read(id string, s Session) {
	value, _ := json.Marshal(s)
	st.n.applySession(id, value, false)
}

// hold connects user's client id here and records it, as the broker does;
// it returns the record written, which the node has not read back yet.
func (st *stage) hold(t *testing.T, id, user string) Session {
	t.Helper()
	st.local.users[id] = user
	st.n.Hold(id, Session{Owner: user, Persistent: true, From: -1})
	w := st.written(t, id)
	if len(w) != 1 {
		t.Fatalf("Hold wrote %d records", len(w))
	}
	return w[0]
}

// written returns the records of client id the node wrote since the last
// call, in order: the sessions topic has one partition, and a mark
// written now ends them.
func (st *stage) written(t *testing.T, id string) []Session {
	t.Helper()
	st.marks++
	mark := fmt.Sprintf("mark-%d", st.marks)
	st.n.produceState(topicSessions, mark, nil)
	var out []Session
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		msg, ok := st.n.stateIn.Poll(100).(*kafka.Message)
		if !ok || !strings.HasSuffix(*msg.TopicPartition.Topic, topicSessions) {
			continue
		}
		switch string(msg.Key) {
		case mark:
			return out
		case id:
			s, err := decodeSession(msg.Value)
			if err != nil || s == nil {
				t.Fatalf("record of %s written: %q (%v)", id, msg.Value, err)
			}
			out = append(out, *s)
		}
	}
	t.Fatalf("mark %s not read back", mark)
	return nil
}

// summary says what a record tells, for comparing.
func summary(s *Session) string {
	if s == nil {
		return "none"
	}
	state := "offline"
	if s.Connected {
		state = "connected"
	}
	out := fmt.Sprintf("%s's on %s %s epoch %d", s.Owner, s.Node, state, s.Epoch)
	if s.Claim != "" {
		out += " claim " + s.Claim
	}
	if s.Refused != "" {
		out += " refused " + s.Refused
	}
	return out
}

// TestApplySessionRecords drives applySession with sequences of records of
// one client id as node n1 reads them. A record of an older epoch than the
// one n1 applied (stale: its writer had not read that one) ends no
// connection here and makes n1 write nothing, except in the race of two
// users, which goes by the order of the topic: another user's record read
// before n1's own came back was first, and refuses n1's connection.
func TestApplySessionRecords(t *testing.T) {
	st := newStage(t)
	// seed is the record n1 and the others last agreed on: offline on n3,
	// epoch 4; n1's next connection is epoch 5.
	seed := func(id string) { st.read(id, Session{Owner: "a", Node: "n3", Persistent: true, Epoch: 4}) }
	// confirmed connects user's client id here, epoch 5 after seed, and
	// reads its record back.
	confirmed := func(t *testing.T, id, user string) {
		seed(id)
		st.read(id, st.hold(t, id, user))
	}
	on := func(node, user string, epoch uint64) Session {
		return Session{Owner: user, Node: node, Connected: true, Persistent: true, Epoch: epoch}
	}
	claim := func(by, user string, epoch uint64) Session {
		s := on("n1", user, epoch)
		s.Claim = by
		return s
	}
	cases := []struct {
		name string
		run  func(t *testing.T, id string)
		// calls end connections here (TakeOver, Refuse), written are
		// the records written (summaries), holds the record applied at
		// the end.
		calls   []string
		written []string
		holds   string
	}{{
		name: "stale claim after a newer connection here",
		run: func(t *testing.T, id string) {
			confirmed(t, id, "a")
			st.read(id, claim("n2", "a", 4))
		},
		holds: "a's on n1 connected epoch 5",
	}, {
		name: "stale claim of a session released here",
		run: func(t *testing.T, id string) {
			seed(id)
			st.read(id, Session{Owner: "a", Node: "n1", Persistent: true, Epoch: 5})
			st.read(id, claim("n2", "a", 4))
		},
		holds: "a's on n1 offline epoch 5",
	}, {
		name: "stale connection elsewhere before this node's newer record comes back",
		run: func(t *testing.T, id string) {
			seed(id)
			own := st.hold(t, id, "a")
			st.read(id, on("n2", "a", 4))
			st.read(id, own)
		},
		holds: "a's on n1 connected epoch 5",
	}, {
		name: "stale connection elsewhere after this node's newer record",
		run: func(t *testing.T, id string) {
			confirmed(t, id, "a")
			st.read(id, on("n2", "a", 4))
		},
		holds: "a's on n1 connected epoch 5",
	}, {
		name: "connection elsewhere of an equal epoch: the later record wins",
		run: func(t *testing.T, id string) {
			confirmed(t, id, "a")
			st.read(id, on("n2", "a", 5))
		},
		calls: []string{"takeover"},
		holds: "a's on n2 connected epoch 5",
	}, {
		name: "claim of an equal epoch",
		run: func(t *testing.T, id string) {
			confirmed(t, id, "a")
			st.read(id, claim("n2", "a", 5))
		},
		calls: []string{"takeover"},
		holds: "a's on n1 connected epoch 5 claim n2",
	}, {
		name: "another user's record after this node's, equal epochs",
		run: func(t *testing.T, id string) {
			st.read(id, st.hold(t, id, "a"))
			st.read(id, on("n2", "b", 0))
		},
		written: []string{"a's on n1 connected epoch 1 refused n2"},
		holds:   "a's on n1 connected epoch 1 refused n2",
	}, {
		name: "another user's record before this node's, equal epochs",
		run: func(t *testing.T, id string) {
			own := st.hold(t, id, "a")
			st.read(id, on("n2", "b", 0))
			st.read(id, own)
		},
		calls: []string{"refuse"},
		holds: "a's on n1 connected epoch 0",
	}, {
		name: "another user's stale record before this node's comes back",
		run: func(t *testing.T, id string) {
			seed(id)
			own := st.hold(t, id, "a")
			st.read(id, on("n2", "b", 0))
			st.read(id, own)
		},
		calls: []string{"refuse"},
		holds: "a's on n1 connected epoch 5",
	}, {
		name: "another user's stale record after this node's",
		run: func(t *testing.T, id string) {
			confirmed(t, id, "a")
			st.read(id, on("n2", "b", 0))
		},
		holds: "a's on n1 connected epoch 5",
	}, {
		name: "another user's stale claim after this node's record",
		run: func(t *testing.T, id string) {
			confirmed(t, id, "a")
			st.read(id, claim("n2", "b", 3))
		},
		holds: "a's on n1 connected epoch 5",
	}, {
		name: "a stale record between this node's and another user's",
		run: func(t *testing.T, id string) {
			confirmed(t, id, "a")
			st.read(id, Session{Owner: "a", Node: "n3", Persistent: true, Epoch: 4})
			st.read(id, on("n2", "b", 5))
		},
		written: []string{"a's on n1 connected epoch 6 refused n2"},
		holds:   "a's on n1 connected epoch 6 refused n2",
	}, {
		name: "refused by the holder",
		run: func(t *testing.T, id string) {
			confirmed(t, id, "a")
			r := on("n2", "b", 6)
			r.Refused = "n1"
			st.read(id, r)
		},
		calls: []string{"refuse"},
		holds: "b's on n2 connected epoch 6 refused n1",
	}}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("c%d", i)
			c.run(t, id)
			var calls []string
			for _, call := range st.local.calls {
				if name, ok := strings.CutSuffix(call, " "+id); ok {
					calls = append(calls, name)
				}
			}
			if !slices.Equal(calls, c.calls) {
				t.Errorf("calls ending a connection here: %q, want %q", calls, c.calls)
			}
			var written []string
			for _, s := range st.written(t, id) {
				written = append(written, summary(&s))
			}
			if !slices.Equal(written, c.written) {
				t.Errorf("records written: %q, want %q", written, c.written)
			}
			if got, _ := st.n.sessions.get(id); summary(got) != c.holds {
				t.Errorf("record applied: %s, want %s", summary(got), c.holds)
			}
		})
	}
}
