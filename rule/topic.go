package rule

import (
	"errors"
	"strings"
)

// ValidFilter checks an MQTT topic filter: '+' and '#' only as whole levels,
// '#' only last.
func ValidFilter(f string) error {
	if f == "" {
		return errors.New("empty topic filter")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return errors.New("topic filter " + quote(f) + ": '#' must be the whole last level")
		}
		if strings.Contains(l, "+") && l != "+" {
			return errors.New("topic filter " + quote(f) + ": '+' must be a whole level")
		}
	}
	return nil
}

func quote(s string) string { return "\"" + s + "\"" }

// MatchTopic reports whether topic matches the MQTT filter. Topics starting
// with '$' are not matched by a leading wildcard (MQTT 4.7.2). It does not allocate.
func MatchTopic(filter, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			// "a/#" also matches "a" itself.
			return fmore == tmore || (!tmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}
