package rule

import (
	"fmt"
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
	text      string // identifier, symbol or the unquoted string
	line, col int
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

// isKeyword reports whether t is the (case-insensitive) keyword kw.
func (t token) isKeyword(kw string) bool {
	return t.kind == tokIdent && strings.EqualFold(t.text, kw)
}

// lex splits rule SQL into tokens; it is run once per rule at load time.
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
	for i < len(src) {
		r, w := utf8.DecodeRuneInString(src[i:])
		switch {
		case unicode.IsSpace(r):
			advance(w)
		case r == '"' || r == '\'':
			startLine, startCol := line, col
			j := i + 1
			var sb strings.Builder
			for {
				if j >= len(src) {
					return nil, &SyntaxError{startLine, startCol, "unterminated string"}
				}
				c := src[j]
				if c == '\\' && j+1 < len(src) {
					sb.WriteByte(src[j+1])
					j += 2
					continue
				}
				if rune(c) == r {
					j++
					break
				}
				sb.WriteByte(c)
				j++
			}
			toks = append(toks, token{tokString, sb.String(), startLine, startCol})
			advance(j - i)
		case unicode.IsLetter(r) || r == '_' || r == '$':
			j := i
			for j < len(src) {
				c, cw := utf8.DecodeRuneInString(src[j:])
				if !(unicode.IsLetter(c) || unicode.IsDigit(c) || c == '_' || c == '$') {
					break
				}
				j += cw
			}
			toks = append(toks, token{tokIdent, src[i:j], line, col})
			advance(j - i)
		case unicode.IsDigit(r):
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' || src[j] == 'e' || src[j] == 'E') {
				j++
			}
			toks = append(toks, token{tokNumber, src[i:j], line, col})
			advance(j - i)
		default:
			n := w
			if i+1 < len(src) {
				switch src[i : i+2] {
				case "<=", ">=", "!=", "<>", "=~":
					n = 2
				}
			}
			toks = append(toks, token{tokSymbol, src[i : i+n], line, col})
			advance(n)
		}
	}
	return append(toks, token{kind: tokEOF, line: line, col: col}), nil
}

// Statement is a parsed rule: what it selects and which topics it reads.
type Statement struct {
	// Fields are the selected columns; "*" selects the whole event.
	Fields []string
	// From holds the MQTT topic filters (or sources) the rule reads.
	From []string
}

type parser struct {
	toks []token
	pos  int
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

// Parse parses rule SQL: SELECT * FROM "filter"[, "filter"...].
func Parse(sql string) (*Statement, error) {
	toks, err := lex(sql)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	st := &Statement{}
	if t := p.next(); !t.isKeyword("SELECT") {
		return nil, p.errorf(t, "expected SELECT, found %s", t)
	}
	if t := p.next(); t.kind != tokSymbol || t.text != "*" {
		return nil, p.errorf(t, "expected * (selecting fields is not supported yet), found %s", t)
	}
	st.Fields = []string{"*"}
	if t := p.next(); !t.isKeyword("FROM") {
		return nil, p.errorf(t, "expected FROM, found %s", t)
	}
	for {
		t := p.next()
		if t.kind != tokString {
			return nil, p.errorf(t, "expected a quoted topic filter, found %s", t)
		}
		if err := ValidFilter(t.text); err != nil {
			return nil, p.errorf(t, "%v", err)
		}
		st.From = append(st.From, t.text)
		if p.peek().kind == tokSymbol && p.peek().text == "," {
			p.next()
			continue
		}
		break
	}
	if t := p.next(); t.kind != tokEOF {
		return nil, p.errorf(t, "unexpected %s", t)
	}
	return st, nil
}
