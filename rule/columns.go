package rule

import "github.com/tidwall/gjson"

// columnsPath implements AppendPath for an event with Columns.
func (e *Event) columnsPath(dst []byte, path []string) ([]byte, bool) {
	return walk(rawKey(e.Columns, path[0]), path[1:]).appendText(dst)
}

// appendColumns writes the event's columns that the selection does not
// override, for SELECT *, … on an event with Columns.
func (s *selected) appendColumns(dst []byte, first bool) ([]byte, bool) {
	gjson.Parse(s.ev.Columns).ForEach(func(k, v gjson.Result) bool {
		if s.has(k.Str) {
			return true
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, k.Raw...)
		dst = append(dst, ':')
		dst = append(dst, v.Raw...)
		return true
	})
	return dst, first
}
