package cluster

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecodeSession: a record of the sessions topic comes from Kafka, where
// another writer may have put anything; no input may panic the decoder or
// the table that applies it, or leave an epoch no record can follow.
func FuzzDecodeSession(f *testing.F) {
	will, _ := json.Marshal(Will{Delay: 5, Message: &Message{Topic: "w", Payload: []byte("gone"), QoS: 1, Origin: "c"}})
	f.Add([]byte(`{"owner":"u","node":"n1","connected":true,"persistent":true,"epoch":3,"protocol_version":5,"expiry":300,"from":12,` +
		`"subscriptions":[{"filter":"a/#","qos":1},{"filter":"$share/g/b","qos":2,"no_local":true,"identifier":7}],"will":` + string(will) + `}`))
	f.Add([]byte(`{"node":"n2","persistent":true,"disconnected":9223372036854775807,"expiry":4294967295,"from":-7,"epoch":18446744073709551615}`))
	f.Add([]byte(`{"subscriptions":[{"filter":"a/#/b","qos":200,"identifier":-1},{"filter":""}],"persistent":true}`))
	f.Add([]byte(`{"will":{"delay":1,"message":null}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSession(b)
		if err != nil || s == nil {
			return
		}
		if s.Epoch+1 < s.Epoch {
			t.Fatalf("epoch %d leaves none to follow it", s.Epoch)
		}
		now := time.Unix(1_800_000_000, 0)
		tab := newSessionTable("n1", time.Second)
		tab.nodeUp("n2", false, now)
		tab.set("c", s)
		tab.match("a/b")
		tab.longestMatch("a/b")
		tab.live("c", now)
		tab.due("n1", []string{"n1"}, now, time.Second)
		tab.handedOver(now.Add(time.Hour))
		tab.count()
		tab.set("c", nil)
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
	})
}
