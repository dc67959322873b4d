// Package logx bounds what the process logs, whatever a caller passes: no
// line longer than MaxLine bytes, and no message logged more often than a
// rate, so that clients cannot fill the disk through the log.
package logx

import (
	"context"
	"encoding"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxLine is the most bytes a log line takes, its newline included.
const MaxLine = 1024

const (
	// maxValue bounds one attribute value and the message, as written
	// (escapes counted).
	maxValue = 512
	// reserve is what the time, level, message key, separators, the
	// suppressed and dropped counts and the newline take at most.
	reserve = 192
	// attrOverhead is a key's separators and quotes (JSON: `,"k":""`).
	attrOverhead = 6
	// scalarCost bounds a number, bool, duration or time as written.
	scalarCost = 40
	// maxKeys bounds the messages the limiter tracks at once.
	maxKeys = 1024
)

// SuppressedKey names the attribute that counts the lines of a message the
// limiter left out since the last one written.
const SuppressedKey = "log_suppressed"

// Options are the rate limit of NewHandler.
type Options struct {
	// PerSecond is how many lines of one message are written per second
	// once Burst is spent; 0 turns the limit off.
	PerSecond float64
	// Burst is how many lines of one message are written at once.
	Burst int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// NewHandler wraps h so that every line is at most MaxLine bytes (long
// messages and attribute values are cut, marked with the bytes left out,
// and attributes beyond the budget are dropped and counted) and each
// message is written at most as often as o allows.
func NewHandler(h slog.Handler, o Options) slog.Handler {
	var l *limiter
	if o.PerSecond > 0 {
		l = &limiter{rate: o.PerSecond, burst: float64(max(o.Burst, 1)), now: o.Now, m: map[string]*bucket{}}
		if l.now == nil {
			l.now = time.Now
		}
	}
	return &handler{inner: h, lim: l}
}

// Allowed reports whether a second has passed since it last said yes for
// last, so that a flood of one kind of event logs one line a second.
func Allowed(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	l := last.Load()
	return now-l > int64(time.Second) && last.CompareAndSwap(l, now)
}

// Keyed is Allowed for each kind of event, named by a key; the zero value
// is ready, and it keeps every key it is asked about.
type Keyed struct {
	last sync.Map // key → *atomic.Int64
}

// Allowed reports whether a second has passed since it last said yes for key.
func (k *Keyed) Allowed(key string) bool {
	v, ok := k.last.Load(key)
	if !ok {
		v, _ = k.last.LoadOrStore(key, new(atomic.Int64))
	}
	return Allowed(v.(*atomic.Int64))
}

type handler struct {
	inner slog.Handler
	lim   *limiter // shared by the handler's derivatives; nil: no limit
	// used is the budget the attributes and groups of WithAttrs and
	// WithGroup already took; prefix is the length of the group names
	// that qualify each key ("a.b.").
	used, prefix int
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	msg, _ := cut(r.Message, maxValue)
	var suppressed int64
	if h.lim != nil {
		ok, n := h.lim.allow(msg)
		if !ok {
			return nil
		}
		suppressed = n
	}
	b := budget{left: MaxLine - reserve - h.used - cost(msg), prefix: h.prefix}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a, ok := b.bound(a); ok {
			out.AddAttrs(a)
		}
		return true
	})
	if b.dropped > 0 {
		out.AddAttrs(slog.Int("log_dropped_attrs", b.dropped))
	}
	if suppressed > 0 {
		out.AddAttrs(slog.Int64(SuppressedKey, suppressed))
	}
	return h.inner.Handle(ctx, out)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	b := budget{left: MaxLine - reserve - h.used, prefix: h.prefix}
	kept := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a, ok := b.bound(a); ok {
			kept = append(kept, a)
		}
	}
	n := *h
	n.inner = h.inner.WithAttrs(kept)
	n.used = MaxLine - reserve - b.left
	return &n
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.inner = h.inner.WithGroup(name)
	n.used += cost(name) + attrOverhead
	n.prefix += cost(name) + 1
	return &n
}

// budget is what is left of a line for attributes.
type budget struct {
	left    int
	prefix  int
	dropped int
}

// bound returns a with its value made a bounded string where it could be
// long, or false when the line has no room left for it.
func (b *budget) bound(a slog.Attr) (slog.Attr, bool) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return a, false
	}
	key := b.prefix + cost(a.Key) + attrOverhead
	if a.Value.Kind() == slog.KindGroup {
		if b.left < key {
			b.dropped++
			return a, false
		}
		b.left -= key
		outer := b.prefix
		b.prefix += cost(a.Key) + 1
		var kept []any
		for _, g := range a.Value.Group() {
			if g, ok := b.bound(g); ok {
				kept = append(kept, g)
			}
		}
		b.prefix = outer
		return slog.Group(a.Key, kept...), len(kept) > 0
	}
	var s string
	switch a.Value.Kind() {
	case slog.KindString:
		s = a.Value.String()
	case slog.KindAny:
		s = text(a.Value.Any())
	default:
		if b.left < key+scalarCost {
			b.dropped++
			return a, false
		}
		b.left -= key + scalarCost
		return a, true
	}
	room := min(maxValue, b.left-key)
	if room < 32 {
		b.dropped++
		return a, false
	}
	s, c := cut(s, room)
	b.left -= key + c
	return slog.String(a.Key, s), true
}

// text is how a value of any type is written, as a string that can be cut.
func text(v any) string {
	switch v := v.(type) {
	case error:
		return v.Error()
	case []byte:
		return string(v)
	case encoding.TextMarshaler:
		t, err := v.MarshalText()
		if err != nil {
			return "!ERROR:" + err.Error()
		}
		return string(t)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprintf("%+v", v)
}

// cut returns s cut so that, escaped as a log handler writes it, it takes
// at most limit bytes, the marker of the bytes left out included; and what
// it takes.
func cut(s string, limit int) (string, int) {
	// The marker takes at most len("...(+") + 10 digits + len(" bytes)").
	const marker = 22
	total, end, endCost := 0, -1, 0
	for i, r := range s {
		c := runeCost(r)
		if end < 0 && total+c > limit-marker {
			end, endCost = i, total
		}
		total += c
		if total > limit {
			m := "...(+" + strconv.Itoa(len(s)-end) + " bytes)"
			return s[:end] + m, endCost + len(m)
		}
	}
	return s, total
}

// cost is what s takes escaped.
func cost(s string) int {
	n := 0
	for _, r := range s {
		n += runeCost(r)
	}
	return n
}

// runeCost is the most bytes r takes as the text or JSON handler escapes
// it: \u00XX in JSON for control bytes and invalid UTF-8, \U000XXXXX in
// text for other unprintable runes.
func runeCost(r rune) int {
	switch {
	case r == utf8.RuneError:
		return 6
	case r == '"' || r == '\\':
		return 2
	case r < 0x20 || r == 0x7f:
		return 6
	case r < utf8.RuneSelf:
		return 1
	case r == '\u2028' || r == '\u2029' || !unicode.IsPrint(r):
		return 10
	}
	return utf8.RuneLen(r)
}

// limiter is a token bucket per message.
type limiter struct {
	rate, burst float64
	now         func() time.Time
	mu          sync.Mutex
	m           map[string]*bucket
}

type bucket struct {
	tokens     float64
	at         time.Time
	suppressed int64
}

// allow reports whether a line of msg may be written, and how many were
// left out since the last one.
func (l *limiter) allow(msg string) (bool, int64) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[msg]
	if b == nil {
		if len(l.m) >= maxKeys {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.m[msg] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return true, n
}

// evict forgets the messages whose buckets are full again and owe no
// count, or every message when none is.
func (l *limiter) evict(now time.Time) {
	for k, b := range l.m {
		if b.suppressed == 0 && b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.m, k)
		}
	}
	if len(l.m) >= maxKeys {
		clear(l.m)
	}
}
