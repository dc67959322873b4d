package conf

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Problem is one configuration error at a line of the file (Line 0 = no particular line).
//
// Msg is complete on its own (it names the key), so that a checker can print
// "FILE:LINE: Msg"; Path is the key path for programs.
type Problem struct {
	Line int
	Path string
	Msg  string
}

// String formats the problem as "LINE: MSG", or just MSG when the line is unknown.
func (p Problem) String() string {
	if p.Line > 0 {
		return strconv.Itoa(p.Line) + ": " + p.Msg
	}
	return p.Msg
}

// Positions maps a dotted key path to the 1-based line where it is set, e.g.
// "broker.data_dir", "sinks[0].buffer.mode", "broker.listeners[1].address",
// "sinks[2]" (the [[sinks]] header line, or the line of the inline table element).
//
// Key parts are joined with "." without quoting, so a quoted key such as
// "bootstrap.servers" appears as "...props.bootstrap.servers", the same path
// as the dotted form.
//
// A multi-line string whose text starts on the line after its opening
// quotes also has TextLineKey(path) mapped to that line.
type Positions map[string]int

// TextLineKey is the key of Positions holding the line where the text of
// the string at path starts, when that is not the key's line.
func TextLineKey(path string) string { return path + "#text" }

// decode parses TOML data into v (a pointer to a struct already filled with defaults) and returns the
// positions of every key plus every problem found: syntax errors (with line), unknown keys, wrong types,
// missing required keys. It never stops at the first problem (except a syntax error, which aborts).
//
// v may be partially updated when problems are returned. A table absent from
// the file is not checked for required keys unless its own field is required.
func decode(data []byte, v any) (Positions, []Problem) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return nil, []Problem{{Msg: fmt.Sprintf("internal error: decode target must be a non-nil pointer to a struct, not %T", v)}}
	}

	// Windows editors like to start files with a UTF-8 byte order mark,
	// which go-toml rejects; it precedes the first line so lines stay right.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))

	// The unstable parser only checks syntax; go-toml's own decoder also
	// rejects duplicate keys, redefined tables, impossible dates and integer
	// overflow, so a document it accepts can be walked without re-checking
	// TOML semantics.
	var generic map[string]any
	if err := toml.Unmarshal(data, &generic); err != nil {
		return nil, []Problem{syntaxProblem(err)}
	}

	root, perr := buildTree(data)
	if perr != nil {
		return nil, []Problem{*perr}
	}

	pos := Positions{}
	collectPositions(pos, root, "")

	d := &decoder{fields: map[reflect.Type][]fieldInfo{}}
	d.structValue(rv.Elem(), root, "")
	sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Line < d.problems[j].Line })
	return pos, d.problems
}

func syntaxProblem(err error) Problem {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		// de.Key() is relative to the current table, not a full path, so it
		// is left out rather than shown as a misleading Path.
		line, _ := de.Position()
		return Problem{Line: line, Msg: strings.TrimPrefix(de.Error(), "toml: ")}
	}
	return Problem{Msg: err.Error()}
}

// node is one value of the document with the line it was set at. Tables and
// arrays use unstable.Table and unstable.Array as kind, whatever their syntax.
type node struct {
	kind unstable.Kind
	line int
	// text is the decoded string of a String, the source text otherwise.
	text string
	// textLine is set when a String's text starts on the line after its
	// key: TOML drops a newline right after a multi-line string's quotes.
	textLine int

	keys   []string // table keys in document order
	fields map[string]*node
	// desc names a table defined by a header as written ("[broker]",
	// "[[sinks]]"), to point the user at it; empty for other tables.
	desc string

	elems []*node
}

func newTable(line int) *node {
	return &node{kind: unstable.Table, line: line, fields: map[string]*node{}}
}

func (n *node) set(key string, v *node) {
	if _, ok := n.fields[key]; !ok {
		n.keys = append(n.keys, key)
	}
	n.fields[key] = v
}

// treeBuilder turns the parser's expressions into a tree. The parser leaves
// Raw empty on Table, ArrayTable and Array nodes, so their lines come from
// their keys or elements instead.
type treeBuilder struct {
	p        *unstable.Parser
	data     []byte
	newlines []int
	root     *node
	cur      *node
}

// shapeMsg reports a document that go-toml accepted but that cannot be
// walked as a tree, which would be a bug here rather than in the file.
const shapeMsg = "internal error: unexpected document structure"

func buildTree(data []byte) (*node, *Problem) {
	b := &treeBuilder{p: &unstable.Parser{}, data: data, root: newTable(0)}
	for i, c := range data {
		if c == '\n' {
			b.newlines = append(b.newlines, i)
		}
	}
	b.cur = b.root
	b.p.Reset(data)
	for b.p.NextExpression() {
		if err := b.expression(b.p.Expression()); err != nil {
			return nil, err
		}
	}
	if err := b.p.Error(); err != nil {
		pr := Problem{Msg: err.Error()}
		var pe *unstable.ParserError
		if errors.As(err, &pe) && pe.Highlight != nil {
			pr.Line = b.lineAt(int(b.p.Range(pe.Highlight).Offset))
		}
		return nil, &pr
	}
	return b.root, nil
}

// lineAt avoids Parser.Shape, which rescans the document from the start on
// every call.
func (b *treeBuilder) lineAt(offset int) int {
	return sort.SearchInts(b.newlines, offset) + 1
}

func (b *treeBuilder) key(n *unstable.Node) ([]string, int) {
	var keys []string
	line := 0
	it := n.Key()
	for it.Next() {
		k := it.Node()
		if line == 0 {
			line = b.lineAt(int(k.Raw.Offset))
		}
		keys = append(keys, string(k.Data))
	}
	return keys, line
}

func (b *treeBuilder) expression(e *unstable.Node) *Problem {
	switch e.Kind {
	case unstable.KeyValue:
		return b.keyValue(b.cur, e)
	case unstable.Table:
		keys, line := b.key(e)
		parent, err := b.descend(b.root, keys[:len(keys)-1], line)
		if err != nil {
			return err
		}
		last := keys[len(keys)-1]
		t := parent.fields[last]
		if t == nil {
			t = newTable(line)
			parent.set(last, t)
		} else if t.kind != unstable.Table {
			return &Problem{Line: line, Msg: shapeMsg}
		}
		// A table first created implicitly by [a.b] belongs to its own [a]
		// header once that appears.
		t.line = line
		t.desc = "[" + joinKeys(keys) + "]"
		b.cur = t
	case unstable.ArrayTable:
		keys, line := b.key(e)
		parent, err := b.descend(b.root, keys[:len(keys)-1], line)
		if err != nil {
			return err
		}
		last := keys[len(keys)-1]
		arr := parent.fields[last]
		if arr == nil {
			arr = &node{kind: unstable.Array, line: line}
			parent.set(last, arr)
		} else if arr.kind != unstable.Array {
			return &Problem{Line: line, Msg: shapeMsg}
		}
		t := newTable(line)
		t.desc = "[[" + joinKeys(keys) + "]]"
		arr.elems = append(arr.elems, t)
		b.cur = t
	}
	return nil
}

// descend walks to the table named by keys, creating missing tables; an
// array of tables stands for its last element, as in [[a]] followed by [a.b].
func (b *treeBuilder) descend(t *node, keys []string, line int) (*node, *Problem) {
	for _, k := range keys {
		c := t.fields[k]
		if c == nil {
			c = newTable(line)
			t.set(k, c)
		}
		if c.kind == unstable.Array && len(c.elems) > 0 {
			c = c.elems[len(c.elems)-1]
		}
		if c.kind != unstable.Table {
			return nil, &Problem{Line: line, Msg: shapeMsg}
		}
		t = c
	}
	return t, nil
}

func (b *treeBuilder) keyValue(t *node, kv *unstable.Node) *Problem {
	keys, line := b.key(kv)
	parent, err := b.descend(t, keys[:len(keys)-1], line)
	if err != nil {
		return err
	}
	v, err := b.value(kv.Value(), line)
	if err != nil {
		return err
	}
	// A multi-line value is reported at its key, not where the value starts.
	v.line = line
	if v.kind == unstable.String && opensWithNewline(b.data[kv.Value().Raw.Offset:]) {
		v.textLine = line + 1
	}
	parent.set(keys[len(keys)-1], v)
	return nil
}

// opensWithNewline reports whether raw, a string value as written, is a
// multi-line string whose opening quotes end their line.
func opensWithNewline(raw []byte) bool {
	for _, quotes := range []string{`'''`, `"""`} {
		if rest, ok := bytes.CutPrefix(raw, []byte(quotes)); ok {
			return bytes.HasPrefix(rest, []byte("\n")) || bytes.HasPrefix(rest, []byte("\r\n"))
		}
	}
	return false
}

// value converts a value node; fallback is the line used for an array,
// which has no position of its own, when it has no element to borrow one from.
func (b *treeBuilder) value(v *unstable.Node, fallback int) (*node, *Problem) {
	switch v.Kind {
	case unstable.InlineTable:
		t := newTable(b.lineAt(int(v.Raw.Offset)))
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				if err := b.keyValue(t, c); err != nil {
					return nil, err
				}
			}
		}
		return t, nil
	case unstable.Array:
		a := &node{kind: unstable.Array, line: fallback}
		it := v.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			el, err := b.value(c, fallback)
			if err != nil {
				return nil, err
			}
			if len(a.elems) == 0 {
				a.line = el.line
			}
			a.elems = append(a.elems, el)
		}
		return a, nil
	default:
		return &node{kind: v.Kind, line: b.lineAt(int(v.Raw.Offset)), text: string(v.Data)}, nil
	}
}

func joinKeys(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = quoteKey(k)
	}
	return strings.Join(q, ".")
}

// quoteKey writes a key the way it must appear in TOML, so that table
// descriptions in messages can be searched for in the file.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return strconv.Quote(k)
		}
	}
	return k
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func collectPositions(pos Positions, n *node, path string) {
	switch n.kind {
	case unstable.Table:
		for _, k := range n.keys {
			c := n.fields[k]
			p := joinPath(path, k)
			pos[p] = c.line
			if c.textLine != 0 {
				pos[TextLineKey(p)] = c.textLine
			}
			collectPositions(pos, c, p)
		}
	case unstable.Array:
		for i, el := range n.elems {
			p := indexPath(path, i)
			pos[p] = el.line
			collectPositions(pos, el, p)
		}
	}
}

type fieldInfo struct {
	name     string
	index    int
	required bool
}

// setDefaulter lets a type fill in its defaults when the decoder creates a
// new value (slice element, map value, allocated pointer), since such values
// cannot be pre-filled by the caller.
type setDefaulter interface {
	SetDefaults()
}

type decoder struct {
	problems []Problem
	fields   map[reflect.Type][]fieldInfo
}

// problem records a bad value. Msg starts with the path because callers print
// Msg alone after "FILE:LINE: ".
func (d *decoder) problem(line int, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{Line: line, Path: path, Msg: path + ": " + fmt.Sprintf(format, args...)})
}

func (d *decoder) typeError(n *node, path, want string) {
	d.problem(n.line, path, "expected %s, got %s", want, describe(n))
}

func (d *decoder) structFields(t reflect.Type) []fieldInfo {
	if fs, ok := d.fields[t]; ok {
		return fs
	}
	var fs []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("toml")
		if !ok || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		fi := fieldInfo{name: name, index: i}
		for _, o := range strings.Split(opts, ",") {
			if o == "required" {
				fi.required = true
			}
		}
		fs = append(fs, fi)
	}
	d.fields[t] = fs
	return fs
}

func newValue(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if sd, ok := p.Interface().(setDefaulter); ok {
		sd.SetDefaults()
	}
	return p
}

func (d *decoder) value(v reflect.Value, n *node, path string) {
	t := v.Type()
	if t == reflect.TypeFor[time.Duration]() {
		d.duration(v, n, path)
		return
	}
	if t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		d.text(v.Addr().Interface().(encoding.TextUnmarshaler), n, path)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(newValue(t.Elem()))
		}
		d.value(v.Elem(), n, path)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			d.problem(n.line, path, "internal error: cannot decode into Go type %s", t)
			return
		}
		v.Set(reflect.ValueOf(natural(n)))
	case reflect.String:
		if n.kind != unstable.String {
			d.typeError(n, path, "a string")
			return
		}
		v.SetString(n.text)
	case reflect.Bool:
		if n.kind != unstable.Bool {
			d.typeError(n, path, "a boolean (true or false)")
			return
		}
		v.SetBool(n.text == "true")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := d.integer(n, path)
		if !ok {
			return
		}
		if v.OverflowInt(i) {
			bits := t.Bits()
			d.problem(n.line, path, "value %d out of range (must be between %d and %d)", i, int64(-1)<<(bits-1), int64(1)<<(bits-1)-1)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		i, ok := d.integer(n, path)
		if !ok {
			return
		}
		if i < 0 || v.OverflowUint(uint64(i)) {
			d.problem(n.line, path, "value %d out of range (must be between 0 and %d)", i, uint64(math.MaxUint64)>>(64-t.Bits()))
			return
		}
		v.SetUint(uint64(i))
	case reflect.Float32, reflect.Float64:
		d.float(v, n, path)
	case reflect.Struct:
		d.structValue(v, n, path)
	case reflect.Slice:
		d.slice(v, n, path)
	case reflect.Map:
		d.mapValue(v, n, path)
	default:
		d.problem(n.line, path, "internal error: cannot decode into Go type %s", t)
	}
}

func (d *decoder) integer(n *node, path string) (int64, bool) {
	if n.kind != unstable.Integer {
		d.typeError(n, path, "an integer")
		return 0, false
	}
	// Base 0 understands TOML's 0x/0o/0b prefixes and digit underscores.
	i, err := strconv.ParseInt(n.text, 0, 64)
	if err != nil {
		d.problem(n.line, path, "invalid integer %s", n.text)
		return 0, false
	}
	return i, true
}

func parseFloat(s string) (float64, error) {
	s = strings.ReplaceAll(s, "_", "")
	// strconv rejects a sign on nan, which TOML allows.
	if s == "+nan" || s == "-nan" {
		s = "nan"
	}
	return strconv.ParseFloat(s, 64)
}

func (d *decoder) float(v reflect.Value, n *node, path string) {
	var f float64
	switch n.kind {
	case unstable.Integer:
		i, ok := d.integer(n, path)
		if !ok {
			return
		}
		f = float64(i)
	case unstable.Float:
		var err error
		if f, err = parseFloat(n.text); err != nil {
			d.problem(n.line, path, "invalid number %s", n.text)
			return
		}
	default:
		d.typeError(n, path, "a number")
		return
	}
	if v.OverflowFloat(f) {
		d.problem(n.line, path, "value %s out of range for a 32-bit float", n.text)
		return
	}
	v.SetFloat(f)
}

func (d *decoder) duration(v reflect.Value, n *node, path string) {
	switch n.kind {
	case unstable.String:
		dur, err := time.ParseDuration(n.text)
		if err != nil {
			d.problem(n.line, path, "invalid duration %q: %suse a number with a unit, e.g. \"500ms\", \"10s\", \"1m\"", n.text, durationReason(err, n.text))
			return
		}
		v.SetInt(int64(dur))
	case unstable.Integer:
		ms, ok := d.integer(n, path)
		if !ok {
			return
		}
		if ms > math.MaxInt64/int64(time.Millisecond) || ms < math.MinInt64/int64(time.Millisecond) {
			d.problem(n.line, path, "duration of %d milliseconds is out of range", ms)
			return
		}
		v.SetInt(ms * int64(time.Millisecond))
	default:
		d.typeError(n, path, `a duration (a string like "10s" or an integer of milliseconds)`)
	}
}

// durationReason keeps the useful part of time.ParseDuration's error, which
// repeats the whole input already shown in the message.
func durationReason(err error, s string) string {
	r := strings.TrimPrefix(err.Error(), "time: ")
	r = strings.TrimSuffix(r, " in duration "+strconv.Quote(s))
	if strings.HasPrefix(r, "invalid duration") {
		return ""
	}
	return r + "; "
}

func (d *decoder) text(u encoding.TextUnmarshaler, n *node, path string) {
	var s string
	switch n.kind {
	case unstable.String, unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		s = n.text
	case unstable.Integer:
		i, ok := d.integer(n, path)
		if !ok {
			return
		}
		s = strconv.FormatInt(i, 10)
	default:
		d.typeError(n, path, "a string")
		return
	}
	if err := u.UnmarshalText([]byte(s)); err != nil {
		d.problem(n.line, path, "invalid value %q: %v", s, err)
	}
}

func (d *decoder) structValue(v reflect.Value, n *node, path string) {
	if n.kind != unstable.Table {
		d.typeError(n, path, "a table")
		return
	}
	fields := d.structFields(v.Type())
	for _, k := range n.keys {
		c := n.fields[k]
		p := joinPath(path, k)
		i := slices.IndexFunc(fields, func(f fieldInfo) bool { return f.name == k })
		if i < 0 {
			msg := fmt.Sprintf("unknown key %q%s", k, tableDesc(n, path))
			if s := suggest(k, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.problems = append(d.problems, Problem{Line: c.line, Path: p, Msg: msg})
			continue
		}
		d.value(v.Field(fields[i].index), c, p)
	}
	for _, f := range fields {
		if _, ok := n.fields[f.name]; f.required && !ok {
			d.problems = append(d.problems, Problem{
				Line: n.line,
				Path: joinPath(path, f.name),
				Msg:  fmt.Sprintf("missing required key %q%s", f.name, tableDesc(n, path)),
			})
		}
	}
}

// tableDesc returns " in <table>" naming the table as the user wrote it,
// or nothing for the top level.
func tableDesc(n *node, path string) string {
	switch {
	case n.desc != "":
		return " in " + n.desc
	case path != "":
		return " in " + path
	}
	return ""
}

func (d *decoder) slice(v reflect.Value, n *node, path string) {
	if n.kind != unstable.Array {
		d.typeError(n, path, "an array")
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.elems), len(n.elems))
	for i, el := range n.elems {
		ev := s.Index(i)
		if sd, ok := ev.Addr().Interface().(setDefaulter); ok {
			sd.SetDefaults()
		}
		d.value(ev, el, indexPath(path, i))
	}
	v.Set(s)
}

func (d *decoder) mapValue(v reflect.Value, n *node, path string) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.problem(n.line, path, "internal error: cannot decode into Go type %s", t)
		return
	}
	if n.kind != unstable.Table {
		d.typeError(n, path, "a table")
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	et := t.Elem()
	plain := et.Kind() == reflect.String && !reflect.PointerTo(et).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
	for _, k := range n.keys {
		c := n.fields[k]
		p := joinPath(path, k)
		if plain {
			d.flattenStrings(v, c, k, p)
			continue
		}
		key := reflect.ValueOf(k).Convert(t.Key())
		ev := newValue(et).Elem()
		if old := v.MapIndex(key); old.IsValid() {
			ev.Set(old)
		}
		// A value that failed to decode would otherwise appear as a zero entry.
		before := len(d.problems)
		d.value(ev, c, p)
		if len(d.problems) == before {
			v.SetMapIndex(key, ev)
		}
	}
}

// flattenStrings stores scalars as their text and nested tables under dotted
// keys, because librdkafka-style properties are written unquoted: in TOML,
// `bootstrap.servers = "x"` is a nested table and `linger.ms = 5` an integer.
func (d *decoder) flattenStrings(m reflect.Value, n *node, key, path string) {
	var s string
	switch n.kind {
	case unstable.Table:
		for _, k := range n.keys {
			d.flattenStrings(m, n.fields[k], key+"."+k, joinPath(path, k))
		}
		return
	case unstable.Array:
		d.typeError(n, path, "a string")
		return
	case unstable.Integer:
		i, ok := d.integer(n, path)
		if !ok {
			return
		}
		s = strconv.FormatInt(i, 10)
	case unstable.Float:
		s = strings.ReplaceAll(n.text, "_", "")
	default:
		s = n.text
	}
	m.SetMapIndex(reflect.ValueOf(key).Convert(m.Type().Key()), reflect.ValueOf(s).Convert(m.Type().Elem()))
}

// natural returns the value go-toml itself would produce when decoding into
// an `any`.
func natural(n *node) any {
	switch n.kind {
	case unstable.Table:
		m := make(map[string]any, len(n.keys))
		for _, k := range n.keys {
			m[k] = natural(n.fields[k])
		}
		return m
	case unstable.Array:
		a := make([]any, len(n.elems))
		for i, el := range n.elems {
			a[i] = natural(el)
		}
		return a
	case unstable.String:
		return n.text
	case unstable.Bool:
		return n.text == "true"
	case unstable.Integer:
		i, _ := strconv.ParseInt(n.text, 0, 64)
		return i
	case unstable.Float:
		f, _ := parseFloat(n.text)
		return f
	default:
		// TOML's date and time variants map to go-toml's own types; let it
		// pick them rather than re-implementing the rules.
		var doc struct {
			V any `toml:"v"`
		}
		if err := toml.Unmarshal([]byte("v = "+n.text), &doc); err != nil {
			return n.text
		}
		return doc.V
	}
}

func describe(n *node) string {
	switch n.kind {
	case unstable.String:
		s := n.text
		if utf8.RuneCountInString(s) > 40 {
			s = string([]rune(s)[:40]) + "..."
		}
		return fmt.Sprintf("a string (%q)", s)
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Bool:
		return "a boolean"
	case unstable.LocalDate:
		return "a date"
	case unstable.LocalTime:
		return "a time"
	case unstable.LocalDateTime, unstable.DateTime:
		return "a date-time"
	case unstable.Array:
		return "an array"
	case unstable.Table:
		return "a table"
	}
	return "a " + n.kind.String()
}

// suggest returns the known key closest to an unknown one, if the difference
// looks like a typo. A short key is allowed fewer edits, or "w" would
// suggest any two-letter key.
func suggest(key string, fields []fieldInfo) string {
	best, bestDist := "", min(3, utf8.RuneCountInString(key))
	for _, f := range fields {
		if dist := editDistance(strings.ToLower(key), strings.ToLower(f.name)); dist < bestDist {
			best, bestDist = f.name, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
