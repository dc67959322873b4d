package conf

import (
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Form returns v (a configuration struct, or a value inside one) as the
// file writes it: tables as maps keyed by the toml names, durations as
// "60s", sizes as "896KB", rates as "1000/s", secrets as "******". Parsed
// back (from TOML, or from JSON through the REST API), it gives v again;
// absent optional tables and unset values of free type are left out.
func Form(v any) any {
	out, _ := form(reflect.ValueOf(v))
	return out
}

// form returns the file form of v, and false when v is unset and is to be
// left out of its table.
func form(v reflect.Value) (any, bool) {
	if !v.IsValid() {
		return nil, false
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return FormatDuration(time.Duration(v.Int())), true
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok && v.Kind() != reflect.Pointer {
		text, err := m.MarshalText()
		if err != nil {
			return err.Error(), true
		}
		return string(text), true
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil, false
		}
		return form(v.Elem())
	case reflect.Struct:
		return table(v), true
	case reflect.Slice:
		if v.IsNil() {
			return nil, false
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i], _ = form(v.Index(i))
		}
		return out, true
	case reflect.Map:
		if v.IsNil() {
			return nil, false
		}
		out := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			if e, ok := form(it.Value()); ok {
				out[it.Key().String()] = e
			}
		}
		return out, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint(), true
	case reflect.Float32, reflect.Float64:
		return v.Float(), true
	case reflect.Bool:
		return v.Bool(), true
	case reflect.String:
		return v.String(), true
	}
	return nil, false
}

// table is a struct's toml-tagged fields; unexported state such as the
// positions of keys is not part of the file.
func table(v reflect.Value) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		if e, ok := form(v.Field(i)); ok {
			out[name] = e
		}
	}
	return out
}

// formJSON is the JSON of a configuration struct in its file form.
func formJSON(v any) ([]byte, error) { return json.Marshal(Form(v)) }

// MarshalJSON writes the configuration with the file's keys and units.
func (c Config) MarshalJSON() ([]byte, error) { return formJSON(c) }

// MarshalJSON writes the connector as its [[connectors]] entry.
func (cn Connector) MarshalJSON() ([]byte, error) { return formJSON(cn) }

// MarshalJSON writes the sink as its [[sinks]] entry.
func (s Sink) MarshalJSON() ([]byte, error) { return formJSON(s) }

// MarshalJSON writes the source as its [[sources]] entry.
func (s Source) MarshalJSON() ([]byte, error) { return formJSON(s) }

// MarshalJSON writes the rule as its [[rules]] entry.
func (r Rule) MarshalJSON() ([]byte, error) { return formJSON(r) }

// FormatDuration writes d in the largest of s, ms, us and ns that holds it
// whole: "60s", "5ms", "0s".
func FormatDuration(d time.Duration) string {
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"s", time.Second}, {"ms", time.Millisecond}, {"us", time.Microsecond}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.unit
		}
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

// MarshalText writes the size in the largest binary unit that holds it
// whole: "256MB", "896KB", "100B".
func (b ByteSize) MarshalText() ([]byte, error) {
	for _, u := range []struct {
		unit string
		size ByteSize
	}{{"GB", GB}, {"MB", MB}, {"KB", KB}} {
		if b != 0 && b%u.size == 0 {
			return []byte(strconv.FormatInt(int64(b/u.size), 10) + u.unit), nil
		}
	}
	return []byte(strconv.FormatInt(int64(b), 10) + "B"), nil
}

// MarshalText writes the rate per the shortest of s, m and h that makes
// the amount whole: "1000/s", "1/m"; 0 is "infinity" (no limit).
func (r Rate) MarshalText() ([]byte, error) {
	if r == 0 {
		return []byte("infinity"), nil
	}
	for _, p := range []struct {
		unit string
		secs float64
	}{{"s", 1}, {"m", 60}, {"h", 3600}} {
		if n := float64(r) * p.secs; math.Abs(n-math.Round(n)) < 1e-9*n {
			return []byte(strconv.FormatFloat(math.Round(n), 'f', -1, 64) + "/" + p.unit), nil
		}
	}
	return []byte(strconv.FormatFloat(math.Round(float64(r)*3600), 'f', -1, 64) + "/h"), nil
}

// MarshalText writes the percentage as "70%".
func (p Percent) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(p), 'f', -1, 64) + "%"), nil
}

// JSONNumbers turns the json.Numbers of a value decoded with UseNumber into
// the integers and floats TOML has, in place, so that an entry sent as JSON
// validates as the same entry written in the file would.
func JSONNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = JSONNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = JSONNumbers(e)
		}
	}
	return v
}
