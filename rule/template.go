package rule

import (
	"fmt"
	"strings"
)

// Template is a compiled `${path}` template: literal text with placeholders.
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
			if expr == "" {
				return nil, fmt.Errorf("template %q: empty ${}", src)
			}
			p.path = strings.Split(expr, ".")
			for _, seg := range p.path {
				if seg == "" {
					return nil, fmt.Errorf("template %q: bad path %q", src, expr)
				}
			}
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
