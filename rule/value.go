package rule

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// kind is the type of a value as EMQX's rule engine distinguishes them.
type kind uint8

const (
	kUndef kind = iota // EMQX's undefined: a missing field
	kNull              // JSON null
	kBool
	kInt
	kFloat
	kStr
	kRaw  // a JSON object or array, kept as text and read lazily
	kList // an array built by the rule (split, list literals)
	kObj  // an object built by the rule; l holds key, value, key, value...
)

// value is what expressions compute. It is a small struct passed by value so
// that scalars and JSON read from the payload never allocate.
type value struct {
	k kind
	n int64 // kInt; kBool as 0/1
	f float64
	s string  // kStr, kRaw
	l []value // kList elements, kObj key/value pairs
}

var (
	undef     = value{}
	nullValue = value{k: kNull}
	trueValue = value{k: kBool, n: 1}
	falseVal  = value{k: kBool}
)

func strValue(s string) value    { return value{k: kStr, s: s} }
func intValue(n int64) value     { return value{k: kInt, n: n} }
func floatValue(f float64) value { return value{k: kFloat, f: f} }
func listValue(l []value) value  { return value{k: kList, l: l} }

func boolValue(b bool) value {
	if b {
		return trueValue
	}
	return falseVal
}

func (v value) isTrue() bool   { return v.k == kBool && v.n != 0 }
func (v value) isNumber() bool { return v.k == kInt || v.k == kFloat }

func (v value) float() float64 {
	if v.k == kInt {
		return float64(v.n)
	}
	return v.f
}

// typeName names v's type in error messages.
func (v value) typeName() string {
	switch v.k {
	case kUndef:
		return "undefined"
	case kNull:
		return "null"
	case kBool:
		return "boolean"
	case kInt:
		return "integer"
	case kFloat:
		return "float"
	case kStr:
		return "string"
	case kRaw:
		if firstByte(v.s) == '[' {
			return "array"
		}
		return "object"
	case kList:
		return "array"
	default:
		return "object"
	}
}

// describe renders v for an error message, shortened.
func (v value) describe() string {
	var b []byte
	if v.k == kStr {
		b = AppendJSONString(nil, v.s)
	} else if v.k == kUndef {
		b = []byte("undefined")
	} else {
		b = v.appendJSON(nil)
	}
	if len(b) > 64 {
		b = append(b[:61], "..."...)
	}
	return string(b)
}

// fromResult converts what gjson found; strings and raw JSON stay slices of
// the input.
func fromResult(r gjson.Result) value {
	if !r.Exists() {
		return undef
	}
	switch r.Type {
	case gjson.String:
		return strValue(r.Str)
	case gjson.Number:
		return parseJSONNumber(r.Raw, r.Num)
	case gjson.True:
		return trueValue
	case gjson.False:
		return falseVal
	case gjson.Null:
		return nullValue
	case gjson.JSON:
		return value{k: kRaw, s: r.Raw}
	}
	return undef
}

// MaxJSONDepth is how deeply JSON a rule decodes (the payload, a string
// read as JSON on a path, json_decode's argument) may nest. The validator
// recurses once per level and so do functions over decoded values; deeper
// text counts as not JSON, so that a publisher cannot exhaust the stack.
const MaxJSONDepth = 256

var (
	errNotJSON     = errors.New("not valid JSON")
	errJSONTooDeep = fmt.Errorf("JSON nested deeper than %d levels", MaxJSONDepth)
)

// checkJSON reports whether s is JSON that nests at most MaxJSONDepth levels.
func checkJSON(s string) error {
	if !jsonDepthOK(s) {
		return errJSONTooDeep
	}
	if !gjson.Valid(s) {
		return errNotJSON
	}
	return nil
}

// ValidJSON reports whether b is JSON nested at most MaxJSONDepth levels,
// for text rendered from what clients send.
func ValidJSON(b []byte) bool {
	return checkJSON(unsafe.String(unsafe.SliceData(b), len(b))) == nil
}

func jsonDepthOK(s string) bool { return JSONNestsAtMost(s, MaxJSONDepth) }

// JSONNestsAtMost reports whether the arrays and objects of s nest at most
// max levels. It scans without recursion; s need not be valid JSON.
func JSONNestsAtMost(s string, max int) bool {
	// Text with few brackets cannot nest deeply; counting them is much
	// faster than the scan, which only deeply bracketed text pays for.
	if strings.Count(s, "[")+strings.Count(s, "{") <= max {
		return true
	}
	depth, inString := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inString:
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > max {
				return false
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return true
}

// parseJSONNumber keeps integers exact, as Erlang's JSON decoder does.
func parseJSONNumber(raw string, f float64) value {
	if !strings.ContainsAny(raw, ".eE") {
		if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
			return intValue(n)
		}
	}
	return floatValue(f)
}

func firstByte(s string) byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c > ' ' {
			return c
		}
	}
	return 0
}

// parseIndex recognises an index path segment, "[N]" (1-based, negative
// counts from the end).
func parseIndex(seg string) (int, bool) {
	if len(seg) < 3 || seg[0] != '[' || seg[len(seg)-1] != ']' {
		return 0, false
	}
	n, err := strconv.Atoi(seg[1 : len(seg)-1])
	if err != nil {
		return 0, false
	}
	return n, true
}

// indexSeg is the path segment for index n.
func indexSeg(n int) string { return "[" + strconv.Itoa(n) + "]" }

// walk follows path from v. Like EMQX, a string on the way is decoded as
// JSON, and anything that does not fit the path gives undefined.
func walk(v value, path []string) value {
	for _, seg := range path {
		if v = v.get(seg); v.k == kUndef {
			return v
		}
	}
	return v
}

func (v value) get(seg string) value {
	if v.k == kStr {
		if checkJSON(v.s) != nil {
			return undef
		}
		v = fromResult(gjson.Parse(v.s))
	}
	idx, isIdx := parseIndex(seg)
	switch v.k {
	case kRaw:
		if isIdx {
			return rawIndex(v.s, idx)
		}
		return rawKey(v.s, seg)
	case kObj:
		if isIdx {
			return undef
		}
		for i := len(v.l) - 2; i >= 0; i -= 2 {
			if v.l[i].s == seg {
				return v.l[i+1]
			}
		}
	case kList:
		if !isIdx {
			return undef
		}
		if idx < 0 {
			idx += len(v.l) + 1
		}
		if idx >= 1 && idx <= len(v.l) {
			return v.l[idx-1]
		}
	}
	return undef
}

// simpleKey reports whether gjson can look key up as a path as is: no
// wildcard, modifier, escape or separator, and not an array index.
func simpleKey(key string) bool {
	if key == "" {
		return false
	}
	digits := true
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '-':
			digits = false
		default:
			return false
		}
	}
	return !digits
}

func rawKey(raw, key string) value {
	if firstByte(raw) != '{' {
		return undef
	}
	if simpleKey(key) {
		return fromResult(gjson.Get(raw, key))
	}
	found := undef
	gjson.Parse(raw).ForEach(func(k, val gjson.Result) bool {
		if k.Str == key {
			found = fromResult(val)
			return false
		}
		return true
	})
	return found
}

func rawIndex(raw string, idx int) value {
	if firstByte(raw) != '[' {
		return undef
	}
	arr := gjson.Parse(raw)
	if idx < 0 {
		n := 0
		arr.ForEach(func(_, _ gjson.Result) bool { n++; return true })
		idx += n + 1
	}
	if idx < 1 {
		return undef
	}
	found := undef
	i := 0
	arr.ForEach(func(_, val gjson.Result) bool {
		i++
		if i == idx {
			found = fromResult(val)
			return false
		}
		return true
	})
	return found
}

// appendJSON encodes v; numbers in their shortest form, undefined as null.
func (v value) appendJSON(dst []byte) []byte {
	switch v.k {
	case kUndef, kNull:
		return append(dst, "null"...)
	case kBool:
		return strconv.AppendBool(dst, v.n != 0)
	case kInt:
		return strconv.AppendInt(dst, v.n, 10)
	case kFloat:
		return appendFloat(dst, v.f)
	case kStr:
		return AppendJSONString(dst, v.s)
	case kRaw:
		return append(dst, v.s...)
	case kList:
		dst = append(dst, '[')
		for i, e := range v.l {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = e.appendJSON(dst)
		}
		return append(dst, ']')
	default:
		return appendPairs(dst, v.l)
	}
}

// appendPairs encodes key/value pairs as an object; undefined values are
// left out, as EMQX never stores them.
func appendPairs(dst []byte, pairs []value) []byte {
	dst = append(dst, '{')
	first := true
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1].k == kUndef {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = AppendJSONString(dst, pairs[i].s)
		dst = append(dst, ':')
		dst = pairs[i+1].appendJSON(dst)
	}
	return append(dst, '}')
}

// appendText renders v into a template: strings raw, objects and arrays as
// JSON; false means there is nothing to render.
func (v value) appendText(dst []byte) ([]byte, bool) {
	switch v.k {
	case kUndef:
		return dst, false
	case kStr, kRaw:
		return append(dst, v.s...), true
	}
	return v.appendJSON(dst), true
}

// appendFloat writes the shortest text that reads back as f; integral
// values without ".0". JSON has no NaN or infinity: those become null.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if a := math.Abs(f); a == 0 || (a >= 1e-6 && a < 1e21) {
		return strconv.AppendFloat(dst, f, 'f', -1, 64)
	}
	return strconv.AppendFloat(dst, f, 'e', -1, 64)
}

// toStr converts like EMQX's any_to_str (str(), concat, '+' on strings).
func (v value) toStr() string {
	switch v.k {
	case kUndef:
		return "undefined"
	case kStr, kRaw:
		return v.s
	case kInt:
		return strconv.FormatInt(v.n, 10)
	case kFloat:
		return formatErlangFloat(v.f)
	case kBool:
		if v.n != 0 {
			return "true"
		}
		return "false"
	case kNull:
		return "null"
	}
	return string(v.appendJSON(nil))
}

// formatErlangFloat is float_to_binary(F, [{decimals, 10}, compact]), which
// EMQX uses to turn floats into strings: 0.1+0.2 gives "0.3", 2.0 gives "2.0".
func formatErlangFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	s := strconv.FormatFloat(f, 'f', 10, 64)
	s = strings.TrimRight(s, "0")
	if strings.HasSuffix(s, ".") {
		s += "0"
	}
	if s == "-0.0" {
		s = "0.0"
	}
	return s
}

// strictEqual is Erlang's =:=, used by IN and CASE x WHEN: 1 and 1.0 differ.
func strictEqual(a, b value) bool {
	if a.k != b.k {
		if (a.k == kRaw || a.k == kList || a.k == kObj) && (b.k == kRaw || b.k == kList || b.k == kObj) {
			return string(a.appendJSON(nil)) == string(b.appendJSON(nil))
		}
		return false
	}
	switch a.k {
	case kUndef, kNull:
		return true
	case kBool, kInt:
		return a.n == b.n
	case kFloat:
		return a.f == b.f
	case kStr:
		return a.s == b.s
	}
	return string(a.appendJSON(nil)) == string(b.appendJSON(nil))
}

// objPut sets key in a kObj's pairs without touching the original slice,
// which another field may share.
func objPut(pairs []value, key string, v value) []value {
	for i := len(pairs) - 2; i >= 0; i -= 2 {
		if pairs[i].s == key {
			out := make([]value, len(pairs))
			copy(out, pairs)
			out[i+1] = v
			return out
		}
	}
	out := make([]value, len(pairs), len(pairs)+2)
	copy(out, pairs)
	return append(out, strValue(key), v)
}

// asObject returns v's pairs when it is an object, decoding raw JSON.
func asObject(v value) ([]value, bool) {
	switch v.k {
	case kObj:
		return v.l, true
	case kRaw:
		if firstByte(v.s) != '{' {
			return nil, false
		}
		var pairs []value
		gjson.Parse(v.s).ForEach(func(k, val gjson.Result) bool {
			pairs = append(pairs, strValue(k.Str), fromResult(val))
			return true
		})
		return pairs, true
	}
	return nil, false
}

// nestedPut is EMQX's nested_put: it stores v at path inside obj, creating
// (or replacing non-object values with) objects on the way.
func nestedPut(obj value, path []string, v value) value {
	pairs, _ := asObject(obj)
	key := path[0]
	if len(path) > 1 {
		v = nestedPut(value{k: kObj, l: pairs}.get(key), path[1:], v)
	}
	return value{k: kObj, l: objPut(pairs, key, v)}
}
