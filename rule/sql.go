package rule

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SyntaxError is a problem in rule SQL, located by line and column (1-based).
type SyntaxError struct {
	Line, Col int
	Msg       string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Col, e.Msg)
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokString
	tokNumber
	tokSymbol
)

type token struct {
	kind      tokKind
	text      string // identifier, symbol, number or the unquoted string
	line, col int
	off, end  int // byte offsets in the source, for the text of a field
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of statement"
	case tokString:
		return fmt.Sprintf("string %q", t.text)
	default:
		return fmt.Sprintf("%q", t.text)
	}
}

func (t token) pos() pos { return pos{t.line, t.col} }

// isKeyword reports whether t is the (case-insensitive) keyword kw.
func (t token) isKeyword(kw string) bool {
	return t.kind == tokIdent && strings.EqualFold(t.text, kw)
}

func (t token) isSymbol(s string) bool { return t.kind == tokSymbol && t.text == s }

// keywords cannot name a field at the start of a path; after a dot they can
// (payload.from is a key).
var keywords = map[string]bool{
	"SELECT": true, "FROM": true, "WHERE": true, "AS": true, "AND": true, "OR": true,
	"NOT": true, "IN": true, "CASE": true, "WHEN": true, "THEN": true, "ELSE": true,
	"END": true, "DIV": true, "MOD": true,
}

func (t token) isAnyKeyword() bool {
	return t.kind == tokIdent && keywords[strings.ToUpper(t.text)]
}

// lex splits rule SQL into tokens; it is run once per rule at load time.
// Strings have no backslash escapes, as in EMQX, so '\d+' reaches the regex
// engine as written; a doubled quote stands for the quote itself.
func lex(src string) ([]token, error) {
	var toks []token
	line, col := 1, 1
	i := 0
	advance := func(n int) {
		for _, r := range src[i : i+n] {
			if r == '\n' {
				line++
				col = 1
			} else {
				col++
			}
		}
		i += n
	}
	emit := func(k tokKind, text string, n int) {
		toks = append(toks, token{k, text, line, col, i, i + n})
		advance(n)
	}
	for i < len(src) {
		r, w := utf8.DecodeRuneInString(src[i:])
		switch {
		case unicode.IsSpace(r):
			advance(w)
		case strings.HasPrefix(src[i:], "--"):
			n := strings.IndexByte(src[i:], '\n')
			if n < 0 {
				n = len(src) - i
			}
			advance(n)
		case r == '"' || r == '\'':
			q := src[i]
			j := i + 1
			var sb strings.Builder
			for {
				if j >= len(src) {
					return nil, &SyntaxError{line, col, "unterminated string"}
				}
				if src[j] == q {
					if j+1 < len(src) && src[j+1] == q {
						sb.WriteByte(q)
						j += 2
						continue
					}
					j++
					break
				}
				sb.WriteByte(src[j])
				j++
			}
			emit(tokString, sb.String(), j-i)
		case unicode.IsLetter(r) || r == '_' || r == '$':
			j := i
			for j < len(src) {
				c, cw := utf8.DecodeRuneInString(src[j:])
				if !(unicode.IsLetter(c) || unicode.IsDigit(c) || c == '_' || c == '$') {
					break
				}
				j += cw
			}
			emit(tokIdent, src[i:j], j-i)
		case r >= '0' && r <= '9':
			j := digitsEnd(src, i)
			// After a dot only digits: payload.1.2 is a path, not 1.2.
			afterDot := len(toks) > 0 && toks[len(toks)-1].isSymbol(".") && toks[len(toks)-1].end == i
			if !afterDot {
				if j+1 < len(src) && src[j] == '.' && isDigit(src[j+1]) {
					j = digitsEnd(src, j+1)
				}
				if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
					k := j + 1
					if k < len(src) && (src[k] == '+' || src[k] == '-') {
						k++
					}
					if k < len(src) && isDigit(src[k]) {
						j = digitsEnd(src, k)
					}
				}
			}
			emit(tokNumber, src[i:j], j-i)
		default:
			n := w
			if i+1 < len(src) {
				switch src[i : i+2] {
				case "<=", ">=", "!=", "<>", "=~":
					n = 2
				}
			}
			emit(tokSymbol, src[i:i+n], n)
		}
	}
	return append(toks, token{kind: tokEOF, line: line, col: col, off: len(src), end: len(src)}), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitsEnd(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// Limits of rule SQL, checked by Parse before any work depends on them.
// Parsing and evaluation recurse once per level of nesting, so the depth
// bounds their stack; the length bounds the token list and the text kept.
const (
	// MaxSQLLength is the longest rule SQL accepted, in bytes.
	MaxSQLLength = 64 << 10
	// MaxDepth is how deep expressions nest: parentheses, operators,
	// function calls, CASE, arrays and IN lists each add a level, and so
	// does every operator of a chain such as a + b + c (use IN for long
	// OR lists). Alias paths (AS a.b.c) have at most MaxDepth keys.
	MaxDepth = 256
	// MaxStringLen bounds a string replace and regex_replace make: each
	// replacement may be as long as the payload, so a 40KB payload could
	// otherwise ask for 400MB and a 1MB one for 250GB.
	MaxStringLen = 16 << 20
)

// SourcePrefix starts a FROM entry that names a Kafka source instead of an
// MQTT topic filter: "$bridges/kafka_consumer:<name>".
const SourcePrefix = "$bridges/kafka_consumer:"

// Statement is a parsed rule: what it selects, from where, and on which condition.
type Statement struct {
	// Fields are the selected columns as written; "*" selects the whole event.
	Fields []string
	// From holds the MQTT topic filters the rule reads.
	From []string
	// Sources holds the names of the Kafka sources the rule reads
	// (FROM "$bridges/kafka_consumer:<name>"); they never match MQTT topics.
	Sources []string
	// Where is the condition as written, "" when there is none.
	Where string

	fields []selectField
	where  expr
	// star: the selection is exactly "*", so the record is the event itself.
	star bool
	// whereFirst: WHERE reads no alias, so it can run before SELECT builds anything.
	whereFirst bool
}

// selectField is one column: an expression and the (possibly nested) key it is stored under.
type selectField struct {
	e     expr
	alias []string
	star  bool
}

type parser struct {
	src  string
	toks []token
	pos  int
	// aliases holds the first key of every alias defined so far: a path
	// starting with one reads the selected value (EMQX evaluates SELECT left
	// to right and WHERE after it, on the event merged with the selection).
	aliases   map[string]aliasKind
	usedAlias bool
	// nest counts the parse functions active on the stack that recurse
	// (expr, NOT, unary minus); depth holds each operator node's height,
	// which evaluation recurses through. Both stay within MaxDepth.
	nest  int
	depth map[expr]int
}

func (p *parser) peek() token { return p.toks[p.pos] }

func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

func (p *parser) errorf(t token, format string, args ...any) error {
	return &SyntaxError{t.line, t.col, fmt.Sprintf(format, args...)}
}

func (p *parser) acceptSymbol(s string) bool {
	if p.peek().isSymbol(s) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) acceptKeyword(kw string) bool {
	if p.peek().isKeyword(kw) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expectSymbol(s string) error {
	if t := p.next(); !t.isSymbol(s) {
		return p.errorf(t, "expected %q, found %s", s, t)
	}
	return nil
}

// text returns the source from token from up to (not including) token p.pos.
func (p *parser) text(from int) string {
	if from >= p.pos {
		return ""
	}
	return p.src[p.toks[from].off:p.toks[p.pos-1].end]
}

// Parse parses rule SQL:
//
//	SELECT <field>[, ...] FROM "<filter>"[, ...] [WHERE <condition>]
//
// All checks that can be made without a message are made here, so that a
// rule that parses only fails at run time on what a message contains.
func Parse(sql string) (*Statement, error) {
	if len(sql) > MaxSQLLength {
		return nil, &SyntaxError{1, 1, fmt.Sprintf("the SQL is %d bytes, more than the limit of %d", len(sql), MaxSQLLength)}
	}
	toks, err := lex(sql)
	if err != nil {
		return nil, err
	}
	p := &parser{src: sql, toks: toks, aliases: map[string]aliasKind{}, depth: map[expr]int{}}
	st := &Statement{}
	if t := p.next(); !t.isKeyword("SELECT") {
		return nil, p.errorf(t, "expected SELECT, found %s", t)
	}
	for {
		start := p.pos
		f, err := p.selectField()
		if err != nil {
			return nil, err
		}
		st.fields = append(st.fields, f)
		st.Fields = append(st.Fields, p.text(start))
		if !p.acceptSymbol(",") {
			break
		}
	}
	st.star = len(st.fields) == 1 && st.fields[0].star
	if t := p.next(); !t.isKeyword("FROM") {
		return nil, p.errorf(t, "expected FROM, found %s", t)
	}
	for {
		t := p.next()
		if t.kind != tokString {
			return nil, p.errorf(t, "expected a quoted topic filter, found %s", t)
		}
		if name, ok := strings.CutPrefix(t.text, SourcePrefix); ok {
			if name == "" {
				return nil, p.errorf(t, "source %q: missing the source name", t.text)
			}
			st.Sources = append(st.Sources, name)
		} else if strings.HasPrefix(t.text, "$bridges/") || strings.HasPrefix(t.text, "$events/") {
			return nil, p.errorf(t, "%q: only MQTT topic filters and %q<name> sources are supported", t.text, SourcePrefix)
		} else if err := ValidFilter(t.text); err != nil {
			return nil, p.errorf(t, "%v", err)
		} else {
			st.From = append(st.From, t.text)
		}
		if !p.acceptSymbol(",") {
			break
		}
	}
	if p.acceptKeyword("WHERE") {
		start := p.pos
		p.usedAlias = false
		if st.where, err = p.or(); err != nil {
			return nil, err
		}
		st.Where = p.text(start)
		st.whereFirst = !p.usedAlias
	}
	if t := p.next(); t.kind != tokEOF {
		return nil, p.errorf(t, "unexpected %s", t)
	}
	return st, nil
}

func (p *parser) selectField() (selectField, error) {
	if p.acceptSymbol("*") {
		return selectField{star: true}, nil
	}
	t := p.peek()
	if t.isKeyword("FROM") || t.kind == tokEOF {
		return selectField{}, p.errorf(t, "expected a field to select, found %s", t)
	}
	start := p.pos
	e, err := p.or()
	if err != nil {
		return selectField{}, err
	}
	f := selectField{e: e}
	switch next := p.peek(); {
	case p.acceptKeyword("AS"):
		f.alias, err = p.aliasPath()
	case next.kind == tokIdent && !next.isAnyKeyword():
		// EMQX allows the alias without AS.
		f.alias, err = p.aliasPath()
	default:
		f.alias = implicitAlias(e, p.text(start))
	}
	if err != nil {
		return f, err
	}
	// A field that is just the path it is stored under reads the same
	// value either way; only other aliases need the selected value.
	if pe, ok := e.(*pathExpr); !ok || !samePath(pe.fullPath(), f.alias) {
		kind := aliasNested
		if len(f.alias) == 1 {
			kind = aliasWhole
		}
		p.aliases[f.alias[0]] = max(p.aliases[f.alias[0]], kind)
	}
	return f, nil
}

// implicitAlias is the key of a field without AS. EMQX stores a path under
// itself and a string constant under its text; for other expressions it
// makes up a name with a timestamp, where this uses the expression's text.
func implicitAlias(e expr, text string) []string {
	switch e := e.(type) {
	case *pathExpr:
		full := e.fullPath()
		for _, s := range full {
			if _, isIdx := parseIndex(s); isIdx {
				return []string{text}
			}
		}
		return full
	case *litExpr:
		if e.v.k == kStr {
			return []string{e.v.s}
		}
	}
	return []string{text}
}

func samePath(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// aliasPath parses the key a field is stored under: name(.name)*.
func (p *parser) aliasPath() ([]string, error) {
	var path []string
	for {
		t := p.next()
		switch {
		case t.kind == tokString && t.text != "":
		case t.kind == tokIdent && (len(path) > 0 || !t.isAnyKeyword()):
		default:
			return nil, p.errorf(t, "expected an alias, found %s", t)
		}
		if path = append(path, t.text); len(path) > MaxDepth {
			return nil, p.errorf(t, "an alias nests deeper than %d keys", MaxDepth)
		}
		if p.peek().isSymbol("[") {
			return nil, p.errorf(p.peek(), "an alias cannot contain an index")
		}
		if !p.acceptSymbol(".") {
			return path, nil
		}
	}
}

// Operator precedence, lowest first, as in EMQX's grammar:
// OR, AND, NOT, comparison and IN, + -, * / div mod, unary + -.

// expr parses an expression nested in another (in parentheses, a call, a
// CASE, an array or an IN list); the top level calls or directly.
func (p *parser) expr() (expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	return p.or()
}

// msgTooDeep is the message of both depth checks.
const msgTooDeep = "expressions nest deeper than %d levels"

// enter accounts for one more recursive parse function on the stack; the
// token just read opened the level.
func (p *parser) enter() error {
	if p.nest++; p.nest > MaxDepth {
		return p.errorf(p.toks[p.pos-1], msgTooDeep, MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.nest-- }

// node records that e evaluates its operands, one level above the deepest
// of them, refusing it (at t) when that is more than MaxDepth levels.
func (p *parser) node(t token, e expr, operands ...expr) (expr, error) {
	d := 0
	for _, o := range operands {
		if o != nil {
			d = max(d, p.depth[o])
		}
	}
	if d++; d > MaxDepth {
		return nil, p.errorf(t, msgTooDeep, MaxDepth)
	}
	p.depth[e] = d
	return e, nil
}

func (p *parser) or() (expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if !p.acceptKeyword("OR") {
			return l, nil
		}
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		if l, err = p.node(t, &logicExpr{pos: t.pos(), or: true, l: l, r: r}, l, r); err != nil {
			return nil, err
		}
	}
}

func (p *parser) and() (expr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if !p.acceptKeyword("AND") {
			return l, nil
		}
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		if l, err = p.node(t, &logicExpr{pos: t.pos(), l: l, r: r}, l, r); err != nil {
			return nil, err
		}
	}
}

func (p *parser) not() (expr, error) {
	t := p.peek()
	if p.acceptKeyword("NOT") {
		if err := p.enter(); err != nil {
			return nil, err
		}
		x, err := p.not()
		p.leave()
		if err != nil {
			return nil, err
		}
		return p.node(t, &notExpr{pos: t.pos(), x: x}, x)
	}
	return p.comparison()
}

var cmpOps = map[string]cmpOp{
	"=": opEq, "!=": opNe, "<>": opNe, "<": opLt, "<=": opLe, ">": opGt, ">=": opGe, "=~": opMatch,
}

func (p *parser) comparison() (expr, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if t.kind == tokSymbol {
		if op, ok := cmpOps[t.text]; ok {
			p.next()
			r, err := p.additive()
			if err != nil {
				return nil, err
			}
			if op == opMatch {
				if lit, ok := r.(*litExpr); ok {
					if lit.v.k != kStr {
						return nil, p.errorf(t, "=~ needs a topic filter on its right, found %s", lit.v.describe())
					}
					if err := ValidFilter(lit.v.s); err != nil {
						return nil, &SyntaxError{lit.line, lit.col, err.Error()}
					}
				}
			}
			if n := p.peek(); n.kind == tokSymbol {
				if _, ok := cmpOps[n.text]; ok {
					return nil, p.errorf(n, "comparisons cannot be chained; use AND")
				}
			}
			return p.node(t, &cmpExpr{pos: t.pos(), op: op, l: l, r: r}, l, r)
		}
	}
	negate := false
	if t.isKeyword("NOT") && p.toks[p.pos+1].isKeyword("IN") {
		p.next()
		negate = true
	}
	if p.acceptKeyword("IN") {
		if err := p.expectSymbol("("); err != nil {
			return nil, err
		}
		in := &inExpr{pos: t.pos(), x: l, not: negate}
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			in.list = append(in.list, e)
			if !p.acceptSymbol(",") {
				break
			}
		}
		if err := p.expectSymbol(")"); err != nil {
			return nil, err
		}
		return p.node(t, in, append([]expr{l}, in.list...)...)
	}
	return l, nil
}

func (p *parser) additive() (expr, error) {
	l, err := p.multiplicative()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		var op arithOp
		switch {
		case t.isSymbol("+"):
			op = opAdd
		case t.isSymbol("-"):
			op = opSub
		default:
			return l, nil
		}
		p.next()
		r, err := p.multiplicative()
		if err != nil {
			return nil, err
		}
		if l, err = p.node(t, &arithExpr{pos: t.pos(), op: op, l: l, r: r}, l, r); err != nil {
			return nil, err
		}
	}
}

func (p *parser) multiplicative() (expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		var op arithOp
		switch {
		case t.isSymbol("*"):
			op = opMul
		case t.isSymbol("/"):
			op = opDiv
		case t.isKeyword("DIV"):
			op = opIntDiv
		case t.isKeyword("MOD") && !p.toks[p.pos+1].isSymbol("("):
			op = opMod
		default:
			return l, nil
		}
		p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		if l, err = p.node(t, &arithExpr{pos: t.pos(), op: op, l: l, r: r}, l, r); err != nil {
			return nil, err
		}
	}
}

func (p *parser) unary() (expr, error) {
	t := p.peek()
	if t.isSymbol("-") || t.isSymbol("+") {
		p.next()
		if err := p.enter(); err != nil {
			return nil, err
		}
		x, err := p.unary()
		p.leave()
		if err != nil {
			return nil, err
		}
		if t.text == "+" {
			return x, nil
		}
		if lit, ok := x.(*litExpr); ok {
			switch {
			case lit.v.k == kInt && lit.v.n != -1<<63:
				return &litExpr{pos: t.pos(), v: intValue(-lit.v.n)}, nil
			case lit.v.k == kFloat:
				return &litExpr{pos: t.pos(), v: floatValue(-lit.v.f)}, nil
			}
		}
		return p.node(t, &negExpr{pos: t.pos(), x: x}, x)
	}
	return p.primary()
}

func (p *parser) primary() (expr, error) {
	t := p.next()
	switch t.kind {
	case tokNumber:
		return numberLiteral(t)
	case tokString:
		return &litExpr{pos: t.pos(), v: strValue(t.text)}, nil
	case tokSymbol:
		switch t.text {
		case "(":
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			if err := p.expectSymbol(")"); err != nil {
				return nil, err
			}
			return e, nil
		case "[":
			l := &listExpr{pos: t.pos()}
			if p.acceptSymbol("]") {
				return l, nil
			}
			for {
				e, err := p.expr()
				if err != nil {
					return nil, err
				}
				l.elems = append(l.elems, e)
				if !p.acceptSymbol(",") {
					break
				}
			}
			if err := p.expectSymbol("]"); err != nil {
				return nil, err
			}
			return p.node(t, l, l.elems...)
		}
	case tokIdent:
		if p.peek().isSymbol("(") {
			return p.call(t)
		}
		switch strings.ToLower(t.text) {
		case "true":
			return &litExpr{pos: t.pos(), v: trueValue}, nil
		case "false":
			return &litExpr{pos: t.pos(), v: falseVal}, nil
		case "null":
			return &litExpr{pos: t.pos(), v: nullValue}, nil
		}
		if t.isKeyword("CASE") {
			return p.caseExpr(t)
		}
		if t.isAnyKeyword() {
			break
		}
		return p.path(t)
	}
	return nil, p.errorf(t, "expected an expression, found %s", t)
}

func numberLiteral(t token) (expr, error) {
	if !strings.ContainsAny(t.text, ".eE") {
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			return nil, &SyntaxError{t.line, t.col, fmt.Sprintf("integer %s out of range", t.text)}
		}
		return &litExpr{pos: t.pos(), v: intValue(n)}, nil
	}
	f, err := strconv.ParseFloat(t.text, 64)
	if err != nil {
		return nil, &SyntaxError{t.line, t.col, fmt.Sprintf("number %s out of range", t.text)}
	}
	return &litExpr{pos: t.pos(), v: floatValue(f)}, nil
}

// path parses a field reference: root(.key | .'quoted key' | [index])*.
func (p *parser) path(root token) (expr, error) {
	e := &pathExpr{pos: root.pos(), root: root.text, field: eventFieldByName[root.text]}
	for {
		switch {
		case p.acceptSymbol("."):
			dot := p.toks[p.pos-1]
			t := p.next()
			switch {
			case t.isAnyKeyword() && t.off != dot.end:
				// payload.from is a key, but "payload. FROM" lost its key.
				return nil, p.errorf(t, "expected a field name after '.', found %s", t)
			case t.kind == tokIdent || t.kind == tokNumber:
				seg := t.text
				// MQTT property names have dashes (pub_props.User-Property.k);
				// join the dashed words when written without spaces.
				if e.root == "pub_props" && t.kind == tokIdent {
					for p.peek().isSymbol("-") && p.peek().off == t.end &&
						p.toks[p.pos+1].kind == tokIdent && p.toks[p.pos+1].off == p.peek().end {
						p.next()
						t = p.next()
						seg += "-" + t.text
					}
				}
				e.path = append(e.path, seg)
			case t.kind == tokString:
				e.path = append(e.path, t.text)
			default:
				return nil, p.errorf(t, "expected a field name after '.', found %s", t)
			}
		case p.peek().isSymbol("["):
			p.next()
			t := p.next()
			neg := false
			if t.isSymbol("-") {
				neg = true
				t = p.next()
			}
			if t.kind != tokNumber || strings.ContainsAny(t.text, ".eE") {
				return nil, p.errorf(t, "expected an array index (an integer, 1 is the first element), found %s", t)
			}
			n, err := strconv.Atoi(t.text)
			if err != nil || n > 1<<31 {
				return nil, p.errorf(t, "array index %s out of range", t.text)
			}
			if neg {
				n = -n
			}
			e.path = append(e.path, indexSeg(n))
			if err := p.expectSymbol("]"); err != nil {
				return nil, err
			}
		default:
			if e.alias = p.aliases[e.root]; e.alias != aliasNone {
				p.usedAlias = true
			}
			return e, nil
		}
		// A path without AS is also the key its value is stored under,
		// which nests as deep as the path is long.
		if len(e.path) > MaxDepth {
			return nil, p.errorf(p.toks[p.pos-1], "a path has more than %d keys", MaxDepth)
		}
	}
}

func (p *parser) caseExpr(start token) (expr, error) {
	c := &caseExpr{pos: start.pos()}
	if !p.peek().isKeyword("WHEN") {
		on, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.on = on
	}
	for p.acceptKeyword("WHEN") {
		cond, err := p.expr()
		if err != nil {
			return nil, err
		}
		if t := p.next(); !t.isKeyword("THEN") {
			return nil, p.errorf(t, "expected THEN, found %s", t)
		}
		then, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.whens = append(c.whens, whenClause{cond, then})
	}
	if len(c.whens) == 0 {
		t := p.peek()
		return nil, p.errorf(t, "expected WHEN, found %s", t)
	}
	if p.acceptKeyword("ELSE") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.els = e
	}
	if t := p.next(); !t.isKeyword("END") {
		return nil, p.errorf(t, "expected END, found %s", t)
	}
	operands := []expr{c.on, c.els}
	for _, w := range c.whens {
		operands = append(operands, w.cond, w.then)
	}
	return p.node(start, c, operands...)
}

func (p *parser) call(name token) (expr, error) {
	p.next() // (
	var args []expr
	if !p.acceptSymbol(")") {
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			args = append(args, e)
			if !p.acceptSymbol(",") {
				break
			}
		}
		if err := p.expectSymbol(")"); err != nil {
			return nil, err
		}
	}
	lname := strings.ToLower(name.text)
	b, ok := builtins[lname]
	if !ok {
		return nil, p.errorf(name, "unknown function %s()", name.text)
	}
	if len(args) < b.min || (b.max >= 0 && len(args) > b.max) {
		return nil, p.errorf(name, "%s() takes %s, got %d", lname, b.arity(), len(args))
	}
	c := &callExpr{pos: name.pos(), name: lname, b: b, args: args}
	if b.prepare != nil {
		e, err := b.prepare(c)
		if err != nil {
			if se, ok := err.(*SyntaxError); ok {
				return nil, se
			}
			return nil, p.errorf(name, "%s(): %v", lname, err)
		}
		return p.node(name, e, args...)
	}
	return p.node(name, c, args...)
}

// getenvPrefix keeps rules from reading arbitrary environment variables,
// as EMQX does with EMQXVAR_.
const getenvPrefix = "MQKAFKA_VAR_"

func lookupEnv(name string) value {
	return strValue(os.Getenv(getenvPrefix + name))
}
