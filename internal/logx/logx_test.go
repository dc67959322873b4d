package logx

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hostile is every kind of string that escapes long: invalid UTF-8,
// control bytes, quotes, unprintable and wide runes.
var hostile = strings.Repeat("\xff\x00\"\\\u2028\U000e0001é日a<>&", 5000)

type point struct{ X, Y []byte }

var formats = []string{"text", "json"}

func inner(format string, buf *bytes.Buffer) slog.Handler {
	o := &slog.HandlerOptions{Level: slog.LevelDebug}
	if format == "json" {
		return slog.NewJSONHandler(buf, o)
	}
	return slog.NewTextHandler(buf, o)
}

func checkLines(t *testing.T, out string, want int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != want {
		t.Fatalf("%d lines, want %d:\n%.3000s", len(lines), want, out)
	}
	for _, l := range lines {
		if len(l)+1 > MaxLine {
			t.Errorf("a %d-byte line: %.400s...", len(l)+1, l)
		}
	}
}

// TestLineBound: no line is longer than MaxLine, whatever is logged.
func TestLineBound(t *testing.T) {
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(NewHandler(inner(format, &buf), Options{}))
			many := []any{}
			for i := range 60 {
				many = append(many, strings.Repeat("k", i%7+1), hostile)
			}
			log.Info(hostile, many...)
			log.Warn("payload", "bytes", []byte(hostile), "err", errors.New(hostile), "any", point{[]byte(hostile), nil},
				"n", 12345, "d", time.Hour, "at", time.Now(), "ok", true)
			log.With("client", hostile).WithGroup(strings.Repeat("g", 300)).With("topic", hostile).
				Error("grouped", slog.Group("packet", "topic", hostile, "filter", hostile, slog.Group("in", "x", hostile)))
			log.WithGroup("a").WithGroup("b").Info("short", "k", "v")
			checkLines(t, buf.String(), 4)
			out := buf.String()
			for _, want := range []string{"...(+", "log_dropped_attrs", "short"} {
				if !strings.Contains(out, want) {
					t.Errorf("no %q in:\n%s", want, out)
				}
			}
		})
	}
}

// TestShortLinesUnchanged: a line within the bounds is written as the
// wrapped handler writes it.
func TestShortLinesUnchanged(t *testing.T) {
	noTime := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	var direct, wrapped bytes.Buffer
	for _, l := range []*slog.Logger{
		slog.New(slog.NewTextHandler(&direct, noTime)),
		slog.New(NewHandler(slog.NewTextHandler(&wrapped, noTime), Options{PerSecond: 10, Burst: 10})),
	} {
		l.With("component", "mqtt").WithGroup("g").Info("client refused", "client", "c1", "err", errors.New("bad"),
			"n", 3, "d", time.Second, slog.Group("packet", "type", "Publish", "payload_bytes", 9))
	}
	if direct.String() != wrapped.String() {
		t.Fatalf("wrapped:\n%s\nwant:\n%s", wrapped.String(), direct.String())
	}
}

// TestCutMarksBytesLeftOut: a cut value tells how many bytes it lost.
func TestCutMarksBytesLeftOut(t *testing.T) {
	s, c := cut(strings.Repeat("x", 1000), 100)
	if !strings.HasSuffix(s, "...(+922 bytes)") || len(s) != c || c > 100 {
		t.Fatalf("cut to %q (cost %d)", s, c)
	}
	if s, c := cut("short", 100); s != "short" || c != 5 {
		t.Fatalf("cut short to %q (cost %d)", s, c)
	}
}

// TestRateLimit: a message beyond its burst is left out until the bucket
// refills; the next line written says how many were; other messages and
// the handler's derivatives share the limit per message.
func TestRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewTextHandler(&buf, nil), Options{PerSecond: 2, Burst: 3, Now: func() time.Time { return now }}))
	derived := log.With("component", "mqtt")
	for i := range 10 {
		if i%2 == 0 {
			log.Warn("read connection error")
		} else {
			derived.Warn("read connection error")
		}
	}
	log.Info("other")
	if got := strings.Count(buf.String(), "read connection error"); got != 3 {
		t.Fatalf("%d lines of a burst of 10 with a burst limit of 3:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "other") {
		t.Fatal("another message was limited too")
	}
	buf.Reset()
	now = now.Add(time.Second) // two more lines allowed
	for range 3 {
		log.Warn("read connection error")
	}
	want := "msg=\"read connection error\" " + SuppressedKey + "=7\n"
	if got := buf.String(); strings.Count(got, "read connection error") != 2 || !strings.Contains(got, want) ||
		strings.Count(got, SuppressedKey) != 1 {
		t.Fatalf("after a second:\n%s\nwant two lines, the first ending %q", got, want)
	}
}

// TestLimiterBounded: the limiter tracks a bounded number of messages.
func TestLimiterBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &limiter{rate: 1, burst: 1, now: func() time.Time { return now }, m: map[string]*bucket{}}
	for i := range 3 * maxKeys {
		l.allow(strings.Repeat("m", i))
	}
	if len(l.m) > maxKeys {
		t.Fatalf("%d messages tracked", len(l.m))
	}
}

func TestAllowed(t *testing.T) {
	var last atomic.Int64
	if !Allowed(&last) || Allowed(&last) {
		t.Fatal("want yes, then no within the second")
	}
	last.Store(time.Now().Add(-2 * time.Second).UnixNano())
	if !Allowed(&last) {
		t.Fatal("want yes after a second")
	}
}

func TestKeyedAllowed(t *testing.T) {
	var k Keyed
	if !k.Allowed("a") || !k.Allowed("b") || k.Allowed("a") || k.Allowed("b") {
		t.Fatal("want yes once for each key, then no within the second")
	}
}

// FuzzLineBound: no line exceeds MaxLine for any message and values.
func FuzzLineBound(f *testing.F) {
	f.Add("msg", "key", hostile[:300], []byte("payload"))
	f.Add(hostile, "", "", []byte(hostile))
	f.Fuzz(func(t *testing.T, msg, key, val string, b []byte) {
		for _, format := range formats {
			var buf bytes.Buffer
			log := slog.New(NewHandler(inner(format, &buf), Options{}))
			log.With(key, val).WithGroup(key).Info(msg, key, val, "b", b, slog.Group(key, key, val, "b", b))
			for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
				if len(l)+1 > MaxLine {
					t.Fatalf("%s: a %d-byte line", format, len(l)+1)
				}
			}
		}
	})
}
