package rule

import (
	"fmt"
	"strconv"
	"strings"
)

// Template is a compiled `${path}` template: literal text with placeholders.
// Paths are written as in the rule SQL: `${payload.a.b}`, `${payload.arr[1]}`
// (1-based), `${pub_props.'User-Property'.k}` or `${pub_props.User-Property.k}`.
// `${.}` is the whole record as JSON; a missing field renders as "".
type Template struct {
	src   string
	parts []part
}

type part struct {
	lit   string
	path  []string // nil with isVar: the whole record
	isVar bool
}

// CompileTemplate compiles src once, at config load.
func CompileTemplate(src string) (*Template, error) {
	t := &Template{src: src}
	rest := src
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("template %q: unclosed ${ at offset %d", src, len(src)-len(rest)+i)
		}
		expr := strings.TrimSpace(rest[i+2 : i+end])
		p := part{isVar: true}
		if expr != "." {
			// EMQX writes fields of the rule's output as ${.field}.
			path, err := parseTemplatePath(strings.TrimPrefix(expr, "."))
			if err != nil {
				return nil, fmt.Errorf("template %q: %w", src, err)
			}
			p.path = path
		}
		t.parts = append(t.parts, p)
		rest = rest[i+end+1:]
	}
}

// MustTemplate compiles a template known to be valid (defaults in code).
func MustTemplate(src string) *Template {
	t, err := CompileTemplate(src)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template source.
func (t *Template) String() string { return t.src }

// IsStatic reports whether the template has no placeholders.
func (t *Template) IsStatic() bool {
	for _, p := range t.parts {
		if p.isVar {
			return false
		}
	}
	return true
}

// Render appends the rendered template to dst.
func (t *Template) Render(dst []byte, r Record) []byte {
	for i := range t.parts {
		p := &t.parts[i]
		if !p.isVar {
			dst = append(dst, p.lit...)
			continue
		}
		if p.path == nil {
			dst = r.AppendJSON(dst)
			continue
		}
		dst, _ = r.AppendPath(dst, p.path)
	}
	return dst
}

// parseTemplatePath splits a placeholder into path segments; an index is
// kept as a "[N]" segment, which Record.AppendPath implementations read as
// an array index. Unquoted keys end only at '.' or '[', so that MQTT
// property names with dashes need no quotes.
func parseTemplatePath(expr string) ([]string, error) {
	var path []string
	i := 0
	for {
		switch {
		case i < len(expr) && (expr[i] == '\'' || expr[i] == '"'):
			end := strings.IndexByte(expr[i+1:], expr[i])
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote in %q", expr)
			}
			path = append(path, expr[i+1:i+1+end])
			i += end + 2
		default:
			j := i
			for j < len(expr) && expr[j] != '.' && expr[j] != '[' {
				j++
			}
			if j == i && !(j < len(expr) && expr[j] == '[' && len(path) > 0) {
				return nil, fmt.Errorf("bad path %q", expr)
			}
			if j > i {
				path = append(path, expr[i:j])
			}
			i = j
		}
		for i < len(expr) && expr[i] == '[' {
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unterminated [ in %q", expr)
			}
			n, err := strconv.Atoi(strings.TrimSpace(expr[i+1 : i+end]))
			if err != nil {
				return nil, fmt.Errorf("bad array index in %q: want an integer, 1 for the first element", expr)
			}
			path = append(path, indexSeg(n))
			i += end + 1
		}
		if i == len(expr) {
			return path, nil
		}
		if expr[i] != '.' {
			return nil, fmt.Errorf("bad path %q", expr)
		}
		i++
		if i == len(expr) {
			return nil, fmt.Errorf("bad path %q", expr)
		}
	}
}
