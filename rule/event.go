package rule

import (
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Record is what a rule emits and what templates render.
type Record interface {
	// AppendJSON appends the whole record as one JSON object.
	AppendJSON(dst []byte) []byte
	// AppendPath appends the text of the field at path (objects as JSON);
	// false means the field does not exist.
	AppendPath(dst []byte, path []string) ([]byte, bool)
}

// Prop is one MQTT 5 publish property other than User-Property, named as EMQX names it.
type Prop struct {
	Name  string
	Str   string
	Num   int64
	IsNum bool
}

// Event is an MQTT publish as the rules see it; field names follow EMQX's
// message.publish event so that templates written for EMQX work unchanged.
type Event struct {
	ID                [16]byte
	ClientID          string
	Username          string
	Topic             string
	Payload           []byte
	QoS               byte
	Retain, Dup       bool
	UserProps         [][2]string // MQTT 5 User-Property pairs, in order
	Props             []Prop      // other MQTT 5 properties
	PeerHost          string
	Timestamp         int64 // ms
	PublishReceivedAt int64 // ms
	Node              string
	// Columns, when set, makes the event a record of other fields (a Kafka
	// source message) given as one JSON object: SQL and templates read it
	// instead of the publish fields above (see columns.go).
	Columns string
}

const hexDigits = "0123456789ABCDEF"

func appendID(dst []byte, id *[16]byte) []byte {
	for _, b := range id {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// AppendJSON implements Record.
func (e *Event) AppendJSON(dst []byte) []byte {
	if e.Columns != "" {
		return append(dst, e.Columns...)
	}
	dst = append(dst, `{"id":"`...)
	dst = appendID(dst, &e.ID)
	dst = append(dst, `","clientid":`...)
	dst = AppendJSONString(dst, e.ClientID)
	dst = append(dst, `,"username":`...)
	dst = AppendJSONString(dst, e.Username)
	dst = append(dst, `,"topic":`...)
	dst = AppendJSONString(dst, e.Topic)
	dst = append(dst, `,"payload":`...)
	dst = appendJSONBytes(dst, e.Payload)
	dst = append(dst, `,"qos":`...)
	dst = strconv.AppendInt(dst, int64(e.QoS), 10)
	dst = append(dst, `,"flags":`...)
	dst = e.appendFlags(dst)
	dst = append(dst, `,"pub_props":`...)
	dst = e.appendPubProps(dst)
	dst = append(dst, `,"peerhost":`...)
	dst = AppendJSONString(dst, e.PeerHost)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, e.Timestamp, 10)
	dst = append(dst, `,"publish_received_at":`...)
	dst = strconv.AppendInt(dst, e.PublishReceivedAt, 10)
	dst = append(dst, `,"node":`...)
	dst = AppendJSONString(dst, e.Node)
	return append(dst, '}')
}

func (e *Event) appendFlags(dst []byte) []byte {
	dst = append(dst, `{"dup":`...)
	dst = strconv.AppendBool(dst, e.Dup)
	dst = append(dst, `,"retain":`...)
	dst = strconv.AppendBool(dst, e.Retain)
	return append(dst, '}')
}

func (e *Event) appendUserProps(dst []byte) []byte {
	dst = append(dst, '{')
	for i, kv := range e.UserProps {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, kv[0])
		dst = append(dst, ':')
		dst = AppendJSONString(dst, kv[1])
	}
	return append(dst, '}')
}

func (e *Event) appendPubProps(dst []byte) []byte {
	dst = append(dst, `{"User-Property":`...)
	dst = e.appendUserProps(dst)
	for _, p := range e.Props {
		dst = append(dst, ',')
		dst = AppendJSONString(dst, p.Name)
		dst = append(dst, ':')
		dst = p.appendJSON(dst)
	}
	return append(dst, '}')
}

func (p *Prop) appendJSON(dst []byte) []byte {
	if p.IsNum {
		return strconv.AppendInt(dst, p.Num, 10)
	}
	return AppendJSONString(dst, p.Str)
}

// AppendPath implements Record. Paths follow the rule SQL: "[N]" segments
// index arrays from 1, and the payload is read as JSON only as far as the
// path goes (a payload that is not JSON has no fields).
func (e *Event) AppendPath(dst []byte, path []string) ([]byte, bool) {
	if len(path) == 0 {
		return e.AppendJSON(dst), true
	}
	if e.Columns != "" {
		return e.columnsPath(dst, path)
	}
	leaf := len(path) == 1
	switch path[0] {
	case "payload":
		if leaf {
			return append(dst, e.Payload...), true
		}
		raw := unsafe.String(unsafe.SliceData(e.Payload), len(e.Payload))
		return walk(value{k: kRaw, s: raw}, path[1:]).appendText(dst)
	case "local":
		// RMQTT's ${local.topic}: the MQTT topic with '/' turned into '.',
		// a valid Kafka topic name for most MQTT topics.
		if len(path) == 2 && path[1] == "topic" {
			for i := 0; i < len(e.Topic); i++ {
				c := e.Topic[i]
				if c == '/' {
					c = '.'
				}
				dst = append(dst, c)
			}
			return dst, true
		}
		return dst, false
	case "flags":
		switch {
		case leaf:
			return e.appendFlags(dst), true
		case len(path) == 2 && path[1] == "dup":
			return strconv.AppendBool(dst, e.Dup), true
		case len(path) == 2 && path[1] == "retain":
			return strconv.AppendBool(dst, e.Retain), true
		}
		return dst, false
	case "pub_props":
		if leaf {
			return e.appendPubProps(dst), true
		}
		if len(path) == 2 && path[1] == "User-Property" {
			return e.appendUserProps(dst), true
		}
		return pubPropsValue(e, path[1:]).appendText(dst)
	}
	if !leaf {
		if f := eventFieldByName[path[0]]; f != fUnknown {
			return walk(eventScalar(e, f), path[1:]).appendText(dst)
		}
		return dst, false
	}
	switch path[0] {
	case "id":
		return appendID(dst, &e.ID), true
	case "clientid":
		return append(dst, e.ClientID...), true
	case "username":
		return append(dst, e.Username...), true
	case "topic":
		return append(dst, e.Topic...), true
	case "qos":
		return strconv.AppendInt(dst, int64(e.QoS), 10), true
	case "peerhost":
		return append(dst, e.PeerHost...), true
	case "timestamp":
		return strconv.AppendInt(dst, e.Timestamp, 10), true
	case "publish_received_at":
		return strconv.AppendInt(dst, e.PublishReceivedAt, 10), true
	case "node":
		return append(dst, e.Node...), true
	}
	return dst, false
}

// AppendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func AppendJSONString(dst []byte, s string) []byte { return appendJSONStr(dst, s) }

func appendJSONBytes(dst, b []byte) []byte { return appendJSONStr(dst, b) }

func appendJSONStr[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, w := utf8.DecodeRune([]byte(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && w == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += w
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
