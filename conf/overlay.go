package conf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Kinds of entries that can be changed at run time, and the key naming each.
var kindKeys = map[string]string{"connectors": "name", "rules": "id", "sinks": "name", "sources": "name"}

// Errors of Change that are not validation problems.
var (
	ErrNotFound = errors.New("no such entry")
	ErrExists   = errors.New("an entry of that name exists")
	ErrKind     = errors.New("unknown kind: want connectors, rules, sinks or sources")
)

// KindKey returns the key naming the entries of kind ("id" for rules), and
// false when kind cannot be changed at run time.
func KindKey(kind string) (string, bool) {
	key, ok := kindKeys[kind]
	return key, ok
}

// CheckEntry decodes one entry of kind on its own and returns what the
// decoder finds in it: wrong types, unknown keys, missing required keys.
// Paths and messages are relative to the entry; they carry no line.
// Validation of values against the rest of the configuration is left to
// Parse.
func CheckEntry(kind string, entry map[string]any) []Problem {
	text, err := toml.Marshal(map[string]any{kind: []map[string]any{entry}})
	if err != nil {
		return []Problem{{Msg: fmt.Sprintf("the entry cannot be written as TOML: %v", err)}}
	}
	_, ps := decode(text, Defaults())
	prefix := kind + "[0]."
	for i := range ps {
		ps[i].Line = 0
		ps[i].Path = strings.TrimPrefix(ps[i].Path, prefix)
		ps[i].Msg = strings.TrimPrefix(ps[i].Msg, prefix)
	}
	return ps
}

// Change is one run-time change of the configuration.
type Change struct {
	Kind   string         // connectors | rules | sinks | sources
	Name   string         // the entry's name (id for rules)
	Entry  map[string]any // the new entry, keys as in the file; nil deletes
	Create bool           // the entry must not exist yet
}

// Overlay holds the run-time changes made through the API. Kept in
// <data_dir>/runtime.toml, it overrides the config file, entry by entry,
// and survives restarts.
type Overlay struct {
	Upserts map[string][]map[string]any `toml:"upserts"`
	Deleted map[string][]string         `toml:"deleted"`
}

// Empty reports whether the overlay changes nothing.
func (o *Overlay) Empty() bool {
	for _, v := range o.Upserts {
		if len(v) > 0 {
			return false
		}
	}
	for _, v := range o.Deleted {
		if len(v) > 0 {
			return false
		}
	}
	return true
}

// OverlayPath is where a data dir keeps its overlay.
func OverlayPath(dataDir string) string { return filepath.Join(dataDir, "runtime.toml") }

// LoadOverlay reads an overlay; a missing file is an empty one.
func LoadOverlay(path string) (*Overlay, error) {
	o := &Overlay{}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runtime config: %w", err)
	}
	if err := toml.Unmarshal(data, o); err != nil {
		return nil, fmt.Errorf("runtime config %s: %w", path, err)
	}
	return o, nil
}

// Save writes the overlay atomically.
func (o *Overlay) Save(path string) error {
	data, err := toml.Marshal(o)
	if err != nil {
		return fmt.Errorf("runtime config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("runtime config: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("runtime config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("runtime config: %w", err)
	}
	return nil
}

// With returns a copy of the overlay with ch applied; base is the merged
// document the change is checked against (for existence).
func (o *Overlay) With(ch Change, base map[string]any) (*Overlay, error) {
	key, ok := kindKeys[ch.Kind]
	if !ok {
		return nil, ErrKind
	}
	exists := indexOf(entries(base, ch.Kind), key, ch.Name) >= 0
	switch {
	case ch.Entry == nil && !exists, ch.Entry != nil && !ch.Create && !exists:
		return nil, fmt.Errorf("%s %q: %w", ch.Kind, ch.Name, ErrNotFound)
	case ch.Create && exists:
		return nil, fmt.Errorf("%s %q: %w", ch.Kind, ch.Name, ErrExists)
	}
	n := &Overlay{Upserts: map[string][]map[string]any{}, Deleted: map[string][]string{}}
	for k, v := range o.Upserts {
		n.Upserts[k] = append([]map[string]any(nil), v...)
	}
	for k, v := range o.Deleted {
		n.Deleted[k] = append([]string(nil), v...)
	}
	ups := n.Upserts[ch.Kind]
	if i := indexOf(ups, key, ch.Name); i >= 0 {
		ups = append(ups[:i], ups[i+1:]...)
	}
	if ch.Entry != nil {
		e := map[string]any{}
		for k, v := range ch.Entry {
			e[k] = v
		}
		e[key] = ch.Name
		ups = append(ups, e)
	} else {
		n.Deleted[ch.Kind] = append(n.Deleted[ch.Kind], ch.Name)
	}
	n.Upserts[ch.Kind] = ups
	return n, nil
}

func entries(doc map[string]any, kind string) []map[string]any {
	var out []map[string]any
	switch v := doc[kind].(type) {
	case []map[string]any:
		out = v
	case []any:
		for _, e := range v {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

func indexOf(es []map[string]any, key, name string) int {
	for i, e := range es {
		if e[key] == name {
			return i
		}
	}
	return -1
}

// Merge applies the overlay to a config file's text: deleted entries go,
// upserted ones replace the entry of the same name or are added.
func (o *Overlay) Merge(file []byte) (map[string]any, error) {
	doc := map[string]any{}
	if err := toml.Unmarshal(file, &doc); err != nil {
		return nil, err
	}
	for kind, key := range kindKeys {
		es := entries(doc, kind)
		for _, name := range o.Deleted[kind] {
			if i := indexOf(es, key, name); i >= 0 {
				es = append(es[:i], es[i+1:]...)
			}
		}
		for _, u := range o.Upserts[kind] {
			name, _ := u[key].(string)
			if i := indexOf(es, key, name); i >= 0 {
				es[i] = u
			} else {
				es = append(es, u)
			}
		}
		if len(es) > 0 {
			doc[kind] = es
		} else {
			delete(doc, kind)
		}
	}
	return doc, nil
}

// ParseMerged validates a merged document exactly as a file is validated.
func ParseMerged(name string, doc map[string]any) (*Config, error) {
	text, err := toml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(name, text)
}
