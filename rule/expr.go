package rule

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"unsafe"

	"github.com/tidwall/gjson"
)

// pos locates an expression in the SQL for run-time error messages.
type pos struct{ line, col int }

func (p pos) at() pos { return p }

// errorf builds a run-time error located at p; only failing messages pay for it.
func (p pos) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d, column %d: %s", p.line, p.col, fmt.Sprintf(format, args...))
}

type expr interface {
	eval(c *evalCtx) (value, error)
	at() pos
}

// evalCtx is the state of one rule applied to one message.
type evalCtx struct {
	ev *Event
	// payload is ev.Payload viewed as a string without a copy: the rules
	// only read it while the publish is being handled.
	payload string
	// payloadJSON caches whether the payload is valid JSON, checked at most
	// once per message and rule, the first time a path reaches into it.
	payloadJSON int8 // 0 unknown, 1 valid, -1 invalid, -2 too deep
	payloadRoot value
	// out is the record being selected, for expressions that read aliases.
	out *selected
}

func newEvalCtx(ev *Event) evalCtx {
	return evalCtx{ev: ev, payload: unsafe.String(unsafe.SliceData(ev.Payload), len(ev.Payload))}
}

var (
	errPayloadNotJSON = errors.New("the payload is not valid JSON")
	errPayloadTooDeep = fmt.Errorf("the payload is JSON nested deeper than %d levels", MaxJSONDepth)
)

func (c *evalCtx) payloadValue() (value, error) {
	if c.payloadJSON == 0 {
		switch checkJSON(c.payload) {
		case nil:
			c.payloadJSON = 1
			c.payloadRoot = fromResult(gjson.Parse(c.payload))
		case errJSONTooDeep:
			c.payloadJSON = -2
		default:
			c.payloadJSON = -1
		}
	}
	switch c.payloadJSON {
	case -1:
		return undef, errPayloadNotJSON
	case -2:
		return undef, errPayloadTooDeep
	}
	return c.payloadRoot, nil
}

type litExpr struct {
	pos
	v value
}

func (e *litExpr) eval(*evalCtx) (value, error) { return e.v, nil }

// pathExpr reads a field of the event, or of the selection when its root is an alias.
type pathExpr struct {
	pos
	root  string
	path  []string
	field eventField
	alias aliasKind
}

// aliasKind says how a path's root relates to the aliases selected before it.
type aliasKind uint8

const (
	aliasNone aliasKind = iota
	// aliasNested: only nested aliases (AS root.x) start with the root; as
	// in EMQX they are merged into the event's field, so other paths under
	// the root still read the event.
	aliasNested
	// aliasWhole: an alias replaced the whole root, hiding the event's field.
	aliasWhole
)

func (e *pathExpr) fullPath() []string {
	return append([]string{e.root}, e.path...)
}

func (e *pathExpr) eval(c *evalCtx) (value, error) {
	if e.alias != aliasNone && c.out != nil {
		if top := c.out.get(e.root); top.k != kUndef {
			if v := walk(top, e.path); v.k != kUndef || e.alias == aliasWhole {
				return v, nil
			}
		}
	}
	ev := c.ev
	if ev.Columns != "" {
		return walk(rawKey(ev.Columns, e.root), e.path), nil
	}
	var base value
	switch e.field {
	case fPayload:
		if len(e.path) == 0 {
			return strValue(c.payload), nil
		}
		v, err := c.payloadValue()
		if err != nil {
			return undef, e.errorf("payload.%s: %v", joinPath(e.path), err)
		}
		return walk(v, e.path), nil
	case fFlags:
		if len(e.path) == 1 {
			switch e.path[0] {
			case "retain":
				return boolValue(ev.Retain), nil
			case "dup":
				return boolValue(ev.Dup), nil
			}
		}
		base = value{k: kObj, l: []value{strValue("dup"), boolValue(ev.Dup), strValue("retain"), boolValue(ev.Retain)}}
	case fPubProps:
		return pubPropsValue(ev, e.path), nil
	case fUnknown:
		return undef, nil
	default:
		base = eventScalar(ev, e.field)
	}
	return walk(base, e.path), nil
}

// eventScalar is a field of the event that is not an object.
func eventScalar(ev *Event, f eventField) value {
	switch f {
	case fID:
		return strValue(string(appendID(nil, &ev.ID)))
	case fClientID:
		return strValue(ev.ClientID)
	case fUsername:
		return strValue(ev.Username)
	case fTopic:
		return strValue(ev.Topic)
	case fQoS:
		return intValue(int64(ev.QoS))
	case fPeerHost:
		return strValue(ev.PeerHost)
	case fTimestamp:
		return intValue(ev.Timestamp)
	case fPublishReceivedAt:
		return intValue(ev.PublishReceivedAt)
	case fNode:
		return strValue(ev.Node)
	}
	return undef
}

func userPropsValue(ev *Event) value {
	l := make([]value, 0, 2*len(ev.UserProps))
	for _, kv := range ev.UserProps {
		l = append(l, strValue(kv[0]), strValue(kv[1]))
	}
	return value{k: kObj, l: l}
}

func propValue(p *Prop) value {
	if p.IsNum {
		return intValue(p.Num)
	}
	return strValue(p.Str)
}

// pubPropsValue reads pub_props without building the whole object for the
// common paths (pub_props.User-Property.k).
func pubPropsValue(ev *Event, path []string) value {
	if len(path) > 0 {
		if path[0] == "User-Property" {
			if len(path) == 1 {
				return userPropsValue(ev)
			}
			for i := len(ev.UserProps) - 1; i >= 0; i-- {
				if ev.UserProps[i][0] == path[1] {
					return walk(strValue(ev.UserProps[i][1]), path[2:])
				}
			}
			return undef
		}
		for i := range ev.Props {
			if ev.Props[i].Name == path[0] {
				return walk(propValue(&ev.Props[i]), path[1:])
			}
		}
		return undef
	}
	l := make([]value, 0, 2+2*len(ev.Props))
	l = append(l, strValue("User-Property"), userPropsValue(ev))
	for i := range ev.Props {
		l = append(l, strValue(ev.Props[i].Name), propValue(&ev.Props[i]))
	}
	return value{k: kObj, l: l}
}

func joinPath(path []string) string {
	var b []byte
	for i, s := range path {
		if _, isIdx := parseIndex(s); !isIdx && i > 0 {
			b = append(b, '.')
		}
		b = append(b, s...)
	}
	return string(b)
}

type negExpr struct {
	pos
	x expr
}

func (e *negExpr) eval(c *evalCtx) (value, error) {
	v, err := e.x.eval(c)
	if err != nil {
		return v, err
	}
	switch {
	case v.k == kInt && v.n != math.MinInt64:
		return intValue(-v.n), nil
	case v.k == kFloat:
		return floatValue(-v.f), nil
	}
	return undef, e.errorf("cannot negate %s", v.describe())
}

type arithOp uint8

const (
	opAdd arithOp = iota
	opSub
	opMul
	opDiv
	opIntDiv
	opMod
)

var arithNames = [...]string{"+", "-", "*", "/", "div", "mod"}

type arithExpr struct {
	pos
	op   arithOp
	l, r expr
}

func (e *arithExpr) eval(c *evalCtx) (value, error) {
	l, err := e.l.eval(c)
	if err != nil {
		return l, err
	}
	r, err := e.r.eval(c)
	if err != nil {
		return r, err
	}
	v, err := arith(e.op, l, r)
	if err != nil {
		return v, e.errorf("%s %s %s: %v", l.describe(), arithNames[e.op], r.describe(), err)
	}
	return v, nil
}

var (
	errNotNumbers  = errors.New("not numbers")
	errNotIntegers = errors.New("not integers")
	errDivZero     = errors.New("division by zero")
	errOverflow    = errors.New("integer overflow")
	errNotFinite   = errors.New("result is not a finite number")
)

// arith follows EMQX: + adds numbers or, when either side is a string,
// concatenates both as strings; / always gives a float; div and mod take
// integers and truncate toward zero like Erlang's div and rem.
func arith(op arithOp, l, r value) (value, error) {
	if op == opAdd && (l.k == kStr || r.k == kStr) {
		return strValue(l.toStr() + r.toStr()), nil
	}
	if op == opIntDiv || op == opMod {
		if l.k != kInt || r.k != kInt {
			return undef, errNotIntegers
		}
		if r.n == 0 {
			return undef, errDivZero
		}
		if l.n == math.MinInt64 && r.n == -1 {
			if op == opMod {
				return intValue(0), nil
			}
			return undef, errOverflow
		}
		if op == opIntDiv {
			return intValue(l.n / r.n), nil
		}
		return intValue(l.n % r.n), nil
	}
	if !l.isNumber() || !r.isNumber() {
		return undef, errNotNumbers
	}
	if l.k == kInt && r.k == kInt && op != opDiv {
		a, b := l.n, r.n
		switch op {
		case opAdd:
			s := a + b
			if (s > a) == (b > 0) {
				return intValue(s), nil
			}
		case opSub:
			s := a - b
			if (s < a) == (b > 0) {
				return intValue(s), nil
			}
		case opMul:
			hi, lo := bits.Mul64(uint64(abs64(a)), uint64(abs64(b)))
			if hi == 0 && lo <= math.MaxInt64 && a != math.MinInt64 && b != math.MinInt64 {
				p := int64(lo)
				if (a < 0) != (b < 0) {
					p = -p
				}
				return intValue(p), nil
			}
		}
		// Erlang integers are unbounded; past int64 fall back to floats
		// rather than wrap around.
	}
	a, b := l.float(), r.float()
	var f float64
	switch op {
	case opAdd:
		f = a + b
	case opSub:
		f = a - b
	case opMul:
		f = a * b
	case opDiv:
		if b == 0 {
			return undef, errDivZero
		}
		f = a / b
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return undef, errNotFinite
	}
	return floatValue(f), nil
}

func abs64(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

type cmpOp uint8

const (
	opEq cmpOp = iota
	opNe
	opLt
	opLe
	opGt
	opGe
	opMatch
)

var cmpNames = [...]string{"=", "!=", "<", "<=", ">", ">=", "=~"}

type cmpExpr struct {
	pos
	op   cmpOp
	l, r expr
}

func (e *cmpExpr) eval(c *evalCtx) (value, error) {
	l, err := e.l.eval(c)
	if err != nil {
		return l, err
	}
	r, err := e.r.eval(c)
	if err != nil {
		return r, err
	}
	b, err := compare(e.op, l, r)
	if err != nil {
		return undef, e.errorf("%s %s %s: %v", l.describe(), cmpNames[e.op], r.describe(), err)
	}
	return boolValue(b), nil
}

// compare is EMQX's compare/3: undefined only equals undefined, and any
// other comparison with it is false; a number against a string converts
// the string (failing when it is not a number); true, false and null
// compare to strings by name.
func compare(op cmpOp, l, r value) (bool, error) {
	if l.k == kUndef || r.k == kUndef {
		if l.k == kUndef && r.k == kUndef {
			return op == opEq || op == opLe || op == opGe, nil
		}
		return false, nil
	}
	if op == opMatch {
		if l.k != kStr || r.k != kStr {
			return false, errors.New("=~ needs a topic and a topic filter")
		}
		return MatchTopic(r.s, l.s), nil
	}
	var err error
	switch {
	case l.isNumber() && r.k == kStr:
		if r, err = numberFromString(r.s); err != nil {
			return false, err
		}
	case l.k == kStr && r.isNumber():
		if l, err = numberFromString(l.s); err != nil {
			return false, err
		}
	case (l.k == kBool || l.k == kNull) && r.k == kStr:
		l = strValue(l.toStr())
	case l.k == kStr && (r.k == kBool || r.k == kNull):
		r = strValue(r.toStr())
	}
	c := order(l, r)
	switch op {
	case opEq:
		return c == 0, nil
	case opNe:
		return c != 0, nil
	case opLt:
		return c < 0, nil
	case opLe:
		return c <= 0, nil
	case opGt:
		return c > 0, nil
	default:
		return c >= 0, nil
	}
}

// rank orders types as Erlang does: number < atom < map < list < binary.
func rank(v value) int {
	switch v.k {
	case kInt, kFloat:
		return 0
	case kBool, kNull, kUndef:
		return 1
	case kObj:
		return 2
	case kList:
		return 3
	case kRaw:
		if firstByte(v.s) == '[' {
			return 3
		}
		return 2
	}
	return 4
}

// order is Erlang's term order (==, not =:=: 1 equals 1.0).
func order(l, r value) int {
	if rl, rr := rank(l), rank(r); rl != rr {
		return rl - rr
	}
	switch l.k {
	case kInt, kFloat:
		if l.k == kInt && r.k == kInt {
			return cmp3(l.n, r.n)
		}
		return cmp3(l.float(), r.float())
	case kStr:
		return cmp3(l.s, r.s)
	case kBool, kNull, kUndef:
		return cmp3(l.toStr(), r.toStr())
	}
	return cmp3(string(l.appendJSON(nil)), string(r.appendJSON(nil)))
}

func cmp3[T int64 | float64 | string](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type logicExpr struct {
	pos
	or   bool
	l, r expr
}

// eval short-circuits like Erlang's andalso/orelse; a condition holds only
// when it is the boolean true.
func (e *logicExpr) eval(c *evalCtx) (value, error) {
	l, err := e.l.eval(c)
	if err != nil {
		return l, err
	}
	if l.isTrue() == e.or {
		return boolValue(e.or), nil
	}
	r, err := e.r.eval(c)
	if err != nil {
		return r, err
	}
	return boolValue(r.isTrue()), nil
}

type notExpr struct {
	pos
	x expr
}

// eval: NOT of anything but a boolean is false, as in EMQX's WHERE.
func (e *notExpr) eval(c *evalCtx) (value, error) {
	v, err := e.x.eval(c)
	if err != nil {
		return v, err
	}
	return boolValue(v.k == kBool && v.n == 0), nil
}

type inExpr struct {
	pos
	x    expr
	list []expr
	not  bool
}

func (e *inExpr) eval(c *evalCtx) (value, error) {
	x, err := e.x.eval(c)
	if err != nil {
		return x, err
	}
	found := false
	for _, le := range e.list {
		v, err := le.eval(c)
		if err != nil {
			return v, err
		}
		if strictEqual(x, v) {
			found = true
			break
		}
	}
	return boolValue(found != e.not), nil
}

type whenClause struct{ cond, then expr }

type caseExpr struct {
	pos
	on    expr // nil: CASE WHEN <condition> ...
	whens []whenClause
	els   expr // nil: undefined
}

func (e *caseExpr) eval(c *evalCtx) (value, error) {
	var on value
	if e.on != nil {
		var err error
		if on, err = e.on.eval(c); err != nil {
			return on, err
		}
	}
	for _, w := range e.whens {
		v, err := w.cond.eval(c)
		if err != nil {
			return v, err
		}
		if (e.on == nil && v.isTrue()) || (e.on != nil && strictEqual(on, v)) {
			return w.then.eval(c)
		}
	}
	if e.els == nil {
		return undef, nil
	}
	return e.els.eval(c)
}

type listExpr struct {
	pos
	elems []expr
}

func (e *listExpr) eval(c *evalCtx) (value, error) {
	l := make([]value, len(e.elems))
	for i, x := range e.elems {
		v, err := x.eval(c)
		if err != nil {
			return v, err
		}
		l[i] = v
	}
	return listValue(l), nil
}

type callExpr struct {
	pos
	name string
	b    *builtin
	args []expr
	// data is what prepare computed from literal arguments (a compiled regex).
	data any
}

func (e *callExpr) eval(c *evalCtx) (value, error) {
	args := make([]value, len(e.args))
	for i, a := range e.args {
		v, err := a.eval(c)
		if err != nil {
			return v, err
		}
		args[i] = v
	}
	v, err := e.b.fn(c, e, args)
	if err != nil {
		return undef, e.errorf("%s(): %v", e.name, err)
	}
	return v, nil
}

// eventField names the fields of the publish event the SQL can read.
type eventField uint8

const (
	fUnknown eventField = iota
	fID
	fClientID
	fUsername
	fTopic
	fPayload
	fQoS
	fFlags
	fPubProps
	fPeerHost
	fTimestamp
	fPublishReceivedAt
	fNode
)

var eventFieldByName = map[string]eventField{
	"id": fID, "clientid": fClientID, "username": fUsername, "topic": fTopic,
	"payload": fPayload, "qos": fQoS, "flags": fFlags, "pub_props": fPubProps,
	"peerhost": fPeerHost, "timestamp": fTimestamp, "publish_received_at": fPublishReceivedAt,
	"node": fNode,
}
