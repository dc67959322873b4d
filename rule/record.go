package rule

import "strconv"

// selected is the record a rule with a field list emits: the fields in
// SELECT order, and the event's fields too when the list has a "*".
type selected struct {
	pairs []value // key, value, key, value...
	ev    *Event  // non-nil with "*"
	// starAt is the number of pairs selected before "*", where the event's
	// fields go in the JSON.
	starAt int
}

// get returns the top-level field key (the last one selected under it).
func (s *selected) get(key string) value {
	for i := len(s.pairs) - 2; i >= 0; i -= 2 {
		if s.pairs[i].s == key {
			return s.pairs[i+1]
		}
	}
	return undef
}

// put stores v under path, EMQX's nested_put: undefined values are not stored.
func (s *selected) put(path []string, v value) {
	if v.k == kUndef {
		return
	}
	key := path[0]
	for i := len(s.pairs) - 2; i >= 0; i -= 2 {
		if s.pairs[i].s == key {
			if len(path) > 1 {
				v = nestedPut(s.pairs[i+1], path[1:], v)
			}
			s.pairs[i+1] = v
			return
		}
	}
	if len(path) > 1 {
		v = nestedPut(undef, path[1:], v)
	}
	s.pairs = append(s.pairs, strValue(key), v)
}

func (s *selected) has(key string) bool {
	for i := 0; i < len(s.pairs); i += 2 {
		if s.pairs[i].s == key {
			return true
		}
	}
	return false
}

// AppendJSON implements Record, keys in SELECT order.
func (s *selected) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	first := true
	for i := 0; i <= len(s.pairs); i += 2 {
		if s.ev != nil && i == 2*s.starAt && s.ev.Columns != "" {
			dst, first = s.appendColumns(dst, first)
		} else if s.ev != nil && i == 2*s.starAt {
			for j := range eventJSONFields {
				f := &eventJSONFields[j]
				if s.has(f.name) {
					continue
				}
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = append(dst, '"')
				dst = append(dst, f.name...)
				dst = append(dst, '"', ':')
				dst = f.appendJSON(s.ev, dst)
			}
		}
		if i == len(s.pairs) {
			break
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = AppendJSONString(dst, s.pairs[i].s)
		dst = append(dst, ':')
		dst = s.pairs[i+1].appendJSON(dst)
	}
	return append(dst, '}')
}

// AppendPath implements Record: strings render raw, objects and arrays as
// JSON, numbers in their shortest form.
func (s *selected) AppendPath(dst []byte, path []string) ([]byte, bool) {
	if len(path) == 0 {
		return s.AppendJSON(dst), true
	}
	if v := s.get(path[0]); v.k != kUndef {
		return walk(v, path[1:]).appendText(dst)
	}
	if s.ev != nil {
		return s.ev.AppendPath(dst, path)
	}
	return dst, false
}

// eventJSONFields lists the event's fields in the order of Event.AppendJSON,
// for records that merge the event with selected fields.
var eventJSONFields = [...]struct {
	name       string
	appendJSON func(e *Event, dst []byte) []byte
}{
	{"id", func(e *Event, dst []byte) []byte {
		dst = append(dst, '"')
		return append(appendID(dst, &e.ID), '"')
	}},
	{"clientid", func(e *Event, dst []byte) []byte { return AppendJSONString(dst, e.ClientID) }},
	{"username", func(e *Event, dst []byte) []byte { return AppendJSONString(dst, e.Username) }},
	{"topic", func(e *Event, dst []byte) []byte { return AppendJSONString(dst, e.Topic) }},
	{"payload", func(e *Event, dst []byte) []byte { return appendJSONBytes(dst, e.Payload) }},
	{"qos", func(e *Event, dst []byte) []byte { return strconv.AppendInt(dst, int64(e.QoS), 10) }},
	{"flags", func(e *Event, dst []byte) []byte { return e.appendFlags(dst) }},
	{"pub_props", func(e *Event, dst []byte) []byte { return e.appendPubProps(dst) }},
	{"peerhost", func(e *Event, dst []byte) []byte { return AppendJSONString(dst, e.PeerHost) }},
	{"timestamp", func(e *Event, dst []byte) []byte { return strconv.AppendInt(dst, e.Timestamp, 10) }},
	{"publish_received_at", func(e *Event, dst []byte) []byte { return strconv.AppendInt(dst, e.PublishReceivedAt, 10) }},
	{"node", func(e *Event, dst []byte) []byte { return AppendJSONString(dst, e.Node) }},
}
