package consumer

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/tidwall/gjson"

	"github.com/mqkafka/mqkafka/rule"
)

// message is one Kafka message as templates see it, the record EMQX's
// Kafka consumer builds: {"headers":{…},"key":…,"offset":…,"topic":…,
// "ts":…,"ts_type":…,"value":…}. Fields are rendered straight from the
// Kafka message: the JSON form is built only for ${.} and the rules.
type message struct {
	m     *kafka.Message
	topic string
	// key and value are the message's, base64-encoded when their encoding
	// mode says so (then they are always valid text).
	key, value         []byte
	keyText, valueText bool // already known to be valid JSON text (base64)
	// badUTF8 is set when the JSON form met bytes that are not UTF-8:
	// JSON cannot carry them, so the render is not used.
	badUTF8 bool
	scratch []byte // base64 output, reused across messages
}

// reset points the record at m, encoding key and value as configured.
func (r *message) reset(m *kafka.Message, keyB64, valueB64 bool) {
	r.m, r.badUTF8 = m, false
	r.topic = ""
	if m.TopicPartition.Topic != nil {
		r.topic = *m.TopicPartition.Topic
	}
	r.key, r.value = m.Key, m.Value
	r.keyText, r.valueText = keyB64, valueB64
	if !keyB64 && !valueB64 {
		return
	}
	n := 0
	if keyB64 {
		n += base64.StdEncoding.EncodedLen(len(m.Key))
	}
	if valueB64 {
		n += base64.StdEncoding.EncodedLen(len(m.Value))
	}
	if cap(r.scratch) < n {
		r.scratch = make([]byte, n)
	}
	buf := r.scratch[:n]
	if keyB64 {
		k := base64.StdEncoding.EncodedLen(len(m.Key))
		base64.StdEncoding.Encode(buf[:k], m.Key)
		r.key, buf = buf[:k], buf[k:]
	}
	if valueB64 {
		base64.StdEncoding.Encode(buf, m.Value)
		r.value = buf
	}
}

func (r *message) tsType() string {
	switch r.m.TimestampType {
	case kafka.TimestampCreateTime:
		return "create"
	case kafka.TimestampLogAppendTime:
		return "append"
	}
	return "undefined"
}

func (r *message) ts() int64 {
	if r.m.TimestampType == kafka.TimestampNotAvailable {
		return 0
	}
	return r.m.Timestamp.UnixMilli()
}

// header returns the value of the last header named key (EMQX keeps the last).
func (r *message) header(key string) ([]byte, bool) {
	hs := r.m.Headers
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Key == key {
			return hs[i].Value, true
		}
	}
	return nil, false
}

// AppendJSON implements rule.Record.
func (r *message) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"headers":`...)
	dst = r.appendHeaders(dst)
	dst = append(dst, `,"key":`...)
	dst = r.appendText(dst, r.key, r.keyText)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, int64(r.m.TopicPartition.Offset), 10)
	dst = append(dst, `,"topic":`...)
	dst = rule.AppendJSONString(dst, r.topic)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, r.ts(), 10)
	dst = append(dst, `,"ts_type":"`...)
	dst = append(dst, r.tsType()...)
	dst = append(dst, `","value":`...)
	dst = r.appendText(dst, r.value, r.valueText)
	return append(dst, '}')
}

func (r *message) appendText(dst, b []byte, known bool) []byte {
	if !known && !utf8.Valid(b) {
		r.badUTF8 = true
	}
	// AppendJSONString only reads b; no copy is needed to view it as a string.
	return rule.AppendJSONString(dst, unsafe.String(unsafe.SliceData(b), len(b)))
}

// appendHeaders writes the headers as one JSON object with sorted keys, the
// last of duplicate keys winning, as EMQX's map of them encodes.
func (r *message) appendHeaders(dst []byte) []byte {
	hs := r.m.Headers
	var idxBuf [16]int
	idx := idxBuf[:0]
	for i := range hs {
		idx = append(idx, i)
	}
	// Insertion sort: few headers, and stable, so the last duplicate stays last.
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && hs[idx[j]].Key < hs[idx[j-1]].Key; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	dst = append(dst, '{')
	first := true
	for n, i := range idx {
		if n+1 < len(idx) && hs[idx[n+1]].Key == hs[i].Key {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		if !utf8.ValidString(hs[i].Key) {
			r.badUTF8 = true
		}
		dst = rule.AppendJSONString(dst, hs[i].Key)
		dst = append(dst, ':')
		dst = r.appendText(dst, hs[i].Value, false)
	}
	return append(dst, '}')
}

// AppendPath implements rule.Record. Leaves render raw: ${.value} is the
// value's bytes as they are, binary too; a path below key, value or a
// header reads it as JSON.
func (r *message) AppendPath(dst []byte, path []string) ([]byte, bool) {
	if len(path) == 0 {
		return r.AppendJSON(dst), true
	}
	leaf := len(path) == 1
	switch path[0] {
	case "key":
		if leaf {
			return append(dst, r.key...), true
		}
		return appendJSONPath(dst, r.key, path[1:])
	case "value":
		if leaf {
			return append(dst, r.value...), true
		}
		return appendJSONPath(dst, r.value, path[1:])
	case "headers":
		if leaf {
			return r.appendHeaders(dst), true
		}
		v, ok := r.header(path[1])
		if !ok {
			return dst, false
		}
		if len(path) == 2 {
			return append(dst, v...), true
		}
		return appendJSONPath(dst, v, path[2:])
	}
	if !leaf {
		return dst, false
	}
	switch path[0] {
	case "topic":
		return append(dst, r.topic...), true
	case "offset":
		return strconv.AppendInt(dst, int64(r.m.TopicPartition.Offset), 10), true
	case "ts":
		return strconv.AppendInt(dst, r.ts(), 10), true
	case "ts_type":
		return append(dst, r.tsType()...), true
	}
	return dst, false
}

// appendJSONPath reads path from JSON text as the rule SQL does: keys,
// "[N]" indexes from 1, strings on the way decoded as JSON.
func appendJSONPath(dst, raw []byte, path []string) ([]byte, bool) {
	v := gjson.ParseBytes(raw)
	for _, seg := range path {
		if v.Type == gjson.String {
			v = gjson.Parse(v.Str)
		}
		v = child(v, seg)
		if !v.Exists() {
			return dst, false
		}
	}
	if v.Type == gjson.String {
		return append(dst, v.Str...), true
	}
	return append(dst, v.Raw...), true
}

func child(v gjson.Result, seg string) gjson.Result {
	var found gjson.Result
	if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(seg, "["), "]")); err == nil && strings.HasPrefix(seg, "[") {
		if !v.IsArray() {
			return found
		}
		arr := v.Array()
		if n < 0 {
			n += len(arr) + 1
		}
		if n >= 1 && n <= len(arr) {
			found = arr[n-1]
		}
		return found
	}
	if !v.IsObject() {
		return found
	}
	v.ForEach(func(k, val gjson.Result) bool {
		if k.Str == seg {
			found = val
		}
		return true
	})
	return found
}
