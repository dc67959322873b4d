package producer

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/rule"
)

// renderer turns a rule's record into a Kafka record with the sink's
// templates, compiled once at load.
type renderer struct {
	topic, key, value, timestamp *rule.Template
	staticTopic                  string // set when the topic has no placeholder
	headers                      *rule.Template
	ext                          []extHeader
	jsonValues                   bool
	userProps                    bool
	// limit refuses records the sink cannot send; nil renders any size.
	limit *recordLimit
}

type extHeader struct{ key, value *rule.Template }

var userPropsPath = []string{"pub_props", "User-Property"}

func newRenderer(cfg conf.Sink) (*renderer, error) {
	r := &renderer{jsonValues: cfg.KafkaHeaderValueEncodeMode == "json", userProps: cfg.UserPropertiesAsHeaders}
	compile := func(name, src string) (*rule.Template, error) {
		if src == "" {
			return nil, nil
		}
		t, err := rule.CompileTemplate(src)
		if err != nil {
			return nil, fmt.Errorf("sink %s: %s: %w", cfg.Name, name, err)
		}
		return t, nil
	}
	var err error
	for _, f := range []struct {
		name string
		src  string
		dst  **rule.Template
	}{
		{"topic", cfg.Topic, &r.topic}, {"key", cfg.Key, &r.key}, {"value", cfg.Value, &r.value},
		{"timestamp", cfg.Timestamp, &r.timestamp}, {"kafka_headers", cfg.KafkaHeaders, &r.headers},
	} {
		if *f.dst, err = compile(f.name, f.src); err != nil {
			return nil, err
		}
	}
	if r.topic == nil {
		return nil, fmt.Errorf("sink %s: empty topic", cfg.Name)
	}
	if r.topic.IsStatic() {
		r.staticTopic = cfg.Topic
	}
	for _, h := range cfg.KafkaExtHeaders {
		var e extHeader
		if e.key, err = compile("kafka_ext_header_key", h.Key); err != nil {
			return nil, err
		}
		if e.value, err = compile("kafka_ext_header_value", h.Value); err != nil {
			return nil, err
		}
		r.ext = append(r.ext, e)
	}
	return r, nil
}

// errRender is why a record could not be rendered; the record is dropped
// as render_failed.
var errRender = errors.New("render failed")

// render fills out's key, value, time and headers and returns the topic
// name. scratch is reused across calls; out's bytes are freshly allocated
// because the buffer keeps them. A record over r.limit is refused with an
// error wrapping ack.ErrTooLarge.
func (r *renderer) render(rec rule.Record, scratch []byte, now int64, out *buffer.Record) (string, []byte, error) {
	topic := r.staticTopic
	if topic == "" {
		scratch = r.topic.Render(scratch[:0], rec)
		if err := conf.ValidTopicName(string(scratch)); err != nil {
			return "", scratch, fmt.Errorf("%w: topic: %v", errRender, err)
		}
		topic = string(scratch)
	}
	buf := scratch[:0]
	if r.key != nil {
		buf = r.key.Render(buf, rec)
	}
	k := len(buf)
	if r.value != nil {
		buf = r.value.Render(buf, rec)
	}
	// Before the copy below, so that an oversized publish costs none.
	if n := conf.RecordOverhead + len(buf); r.limit != nil && n > r.limit.wire {
		return "", buf, r.limit.tooLarge(n)
	}
	// One exact allocation holds key and value.
	kv := make([]byte, len(buf))
	copy(kv, buf)
	out.Key, out.Value = kv[:k:k], kv[k:]
	out.Time = now
	if r.timestamp != nil {
		buf = r.timestamp.Render(buf[:0], rec)
		if len(buf) > 0 {
			ts, err := strconv.ParseInt(string(buf), 10, 64)
			if err != nil || ts < 0 {
				return "", buf, fmt.Errorf("%w: timestamp %q is not a time in milliseconds", errRender, buf)
			}
			out.Time = ts
		}
	}
	var err error
	if buf, err = r.renderHeaders(rec, buf, out); err != nil {
		return "", buf, err
	}
	if r.limit != nil {
		if err := r.limit.check(out); err != nil {
			return "", buf, err
		}
	}
	return topic, buf, nil
}

func (r *renderer) renderHeaders(rec rule.Record, buf []byte, out *buffer.Record) ([]byte, error) {
	out.Headers = out.Headers[:0]
	if r.headers != nil {
		buf = r.headers.Render(buf[:0], rec)
		if err := r.appendJSONHeaders(out, buf); err != nil {
			return buf, err
		}
	}
	if r.userProps {
		var ok bool
		if buf, ok = rec.AppendPath(buf[:0], userPropsPath); ok {
			if err := r.appendJSONHeaders(out, buf); err != nil {
				return buf, err
			}
		}
	}
	for _, e := range r.ext {
		buf = e.key.Render(buf[:0], rec)
		key := string(buf)
		buf = e.value.Render(buf[:0], rec)
		var v []byte
		if r.jsonValues {
			v = rule.AppendJSONString(nil, string(buf))
		} else {
			v = append([]byte(nil), buf...)
		}
		out.Headers = append(out.Headers, buffer.Header{Key: key, Value: v})
	}
	if len(out.Headers) == 0 {
		out.Headers = nil
	}
	return buf, nil
}

// appendJSONHeaders reads headers from what a kafka_headers placeholder
// rendered: a JSON object, or a list of {"key": …, "value": …}, as EMQX takes.
func (r *renderer) appendJSONHeaders(out *buffer.Record, text []byte) error {
	if len(text) == 0 {
		return nil
	}
	if !rule.ValidJSON(text) {
		return fmt.Errorf("%w: kafka_headers rendered %.64q, not a JSON object or list nested at most %d levels", errRender, text, rule.MaxJSONDepth)
	}
	res := gjson.ParseBytes(text)
	switch {
	case res.IsObject():
		res.ForEach(func(k, v gjson.Result) bool {
			out.Headers = append(out.Headers, buffer.Header{Key: k.String(), Value: r.headerValue(v)})
			return true
		})
	case res.IsArray():
		var bad error
		res.ForEach(func(_, item gjson.Result) bool {
			k, v := item.Get("key"), item.Get("value")
			if !item.IsObject() || !k.Exists() {
				bad = fmt.Errorf("%w: kafka_headers list entry %.64q has no \"key\"", errRender, item.Raw)
				return false
			}
			out.Headers = append(out.Headers, buffer.Header{Key: k.String(), Value: r.headerValue(v)})
			return true
		})
		return bad
	default:
		return fmt.Errorf("%w: kafka_headers rendered %.64q, not a JSON object or list nested at most %d levels", errRender, text, rule.MaxJSONDepth)
	}
	return nil
}

// headerValue is a string's text, or the JSON of anything else; with
// kafka_header_value_encode_mode = "json" every value is JSON.
func (r *renderer) headerValue(v gjson.Result) []byte {
	if r.jsonValues || v.Type != gjson.String {
		return []byte(v.Raw)
	}
	return []byte(v.Str)
}
