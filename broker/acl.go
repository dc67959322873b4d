package broker

import (
	"strings"

	"github.com/mqkafka/mqkafka/conf"
)

// acl is [[broker.acl]] compiled: rules in order, the first that matches
// decides, and what none matches is denied.
type acl struct {
	rules []aclRule
}

type aclRule struct {
	allow              bool
	username, clientID string // "" matches everyone
	publish, subscribe bool
	topics             []aclTopic
}

type aclTopic struct {
	filter string
	eq     bool // match the filter literally ("eq t/#")
	// subst: the filter holds ${username} or ${clientid}.
	subst bool
}

func newACL(rules []conf.ACLRule) *acl {
	if len(rules) == 0 {
		return nil
	}
	a := &acl{}
	for _, r := range rules {
		cr := aclRule{
			allow:     r.Permission == "allow",
			username:  r.Username,
			clientID:  r.ClientID,
			publish:   r.Action == "publish" || r.Action == "all",
			subscribe: r.Action == "subscribe" || r.Action == "all",
		}
		for _, t := range r.Topics {
			f, eq := strings.CutPrefix(t, "eq ")
			cr.topics = append(cr.topics, aclTopic{filter: f, eq: eq,
				subst: !eq && (strings.Contains(f, "${username}") || strings.Contains(f, "${clientid}"))})
		}
		a.rules = append(a.rules, cr)
	}
	return a
}

// allowed decides whether a client may publish to topic (write) or
// subscribe to the filter topic / receive a message on topic (!write).
func (a *acl) allowed(username, clientID, topic string, write bool) bool {
	// A shared subscription is checked as the filter it shares.
	if !write {
		if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
			if _, f, ok := strings.Cut(rest, "/"); ok {
				topic = f
			}
		}
	}
	for i := range a.rules {
		r := &a.rules[i]
		if (r.username != "" && r.username != username) || (r.clientID != "" && r.clientID != clientID) {
			continue
		}
		if (write && !r.publish) || (!write && !r.subscribe) {
			continue
		}
		for _, t := range r.topics {
			if t.matches(username, clientID, topic) {
				return r.allow
			}
		}
	}
	return false
}

func (t aclTopic) matches(username, clientID, topic string) bool {
	if t.eq {
		return topic == t.filter
	}
	f := t.filter
	if t.subst {
		// A value that is empty or holds a separator or wildcard would widen
		// the filter to other clients' topics; such a rule does not match.
		if strings.Contains(f, "${username}") {
			if !plainLevel(username) {
				return false
			}
			f = strings.ReplaceAll(f, "${username}", username)
		}
		if strings.Contains(f, "${clientid}") {
			if !plainLevel(clientID) {
				return false
			}
			f = strings.ReplaceAll(f, "${clientid}", clientID)
		}
	}
	return filterCovers(f, topic)
}

func plainLevel(s string) bool { return s != "" && !strings.ContainsAny(s, "/+#") }

// filterCovers reports whether every topic that sub (a topic name, or a
// filter being subscribed to) matches is matched by filter, as EMQX's ACL
// does: "a/#" covers "a/+/b", "a/+" does not cover "a/#". Wildcards at the
// first level do not match topics starting with '$' (MQTT 4.7.2).
func filterCovers(filter, sub string) bool {
	dollar := strings.HasPrefix(sub, "$")
	for i := 0; ; i++ {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return !(i == 0 && dollar)
		}
		sl, srest, smore := strings.Cut(sub, "/")
		switch {
		case fl == "+":
			if sl == "#" || (i == 0 && dollar) {
				return false
			}
		case fl != sl:
			return false
		}
		switch {
		case !fmore && !smore:
			return true
		case !smore:
			// "a/#" also matches "a".
			return frest == "#"
		case !fmore:
			return false
		}
		filter, sub = frest, srest
	}
}
