package rule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// dateTok is one piece of a format_date format: literal text or a field.
type dateTok struct {
	lit   string
	field byte // 0 for literal text; else Y m d H M S N(ns) 3(ms) 6(us) z :(%:z) ;(%::z)
}

// dateDirectives are EMQX's (emqx_utils_calendar) format directives.
var dateDirectives = []struct {
	text  string
	field byte
}{
	{"%Y", 'Y'}, {"%m", 'm'}, {"%d", 'd'}, {"%H", 'H'}, {"%M", 'M'}, {"%S", 'S'},
	{"%N", 'N'}, {"%3N", '3'}, {"%6N", '6'}, {"%z", 'z'}, {"%:z", ':'}, {"%::z", ';'},
}

// parseDateFormat splits a format once; anything that is not a directive is
// copied as is, as EMQX does.
func parseDateFormat(s string) []dateTok {
	var toks []dateTok
	lit := 0
outer:
	for i := 0; i < len(s); {
		if s[i] == '%' {
			for _, d := range dateDirectives {
				if strings.HasPrefix(s[i:], d.text) {
					if lit < i {
						toks = append(toks, dateTok{lit: s[lit:i]})
					}
					toks = append(toks, dateTok{field: d.field})
					i += len(d.text)
					lit = i
					continue outer
				}
			}
		}
		i++
	}
	if lit < len(s) {
		toks = append(toks, dateTok{lit: s[lit:]})
	}
	return toks
}

// parseOffset reads a UTC offset as EMQX does: seconds, "Z", "local",
// "+08:00", "+0800" or "-08:00:00". local reports an offset that must be
// read again when used, since it changes with daylight saving time.
func parseOffset(v value) (sec int64, local bool, err error) {
	switch v.k {
	case kInt:
		return v.n, false, nil
	case kUndef:
		return 0, false, nil
	case kStr:
	default:
		return 0, false, fmt.Errorf("bad time offset %s", v.describe())
	}
	s := v.s
	switch s {
	case "Z", "z":
		return 0, false, nil
	case "local":
		_, off := time.Now().Zone()
		return int64(off), true, nil
	}
	bad := fmt.Errorf("bad time offset %q (Z, local, +HH:MM, +HHMM or +HH:MM:SS)", s)
	if len(s) < 2 || (s[0] != '+' && s[0] != '-') {
		return 0, false, bad
	}
	parts := strings.Split(s[1:], ":")
	if len(parts) == 1 && len(parts[0]) == 4 {
		parts = []string{parts[0][:2], parts[0][2:]}
	}
	if len(parts) < 2 || len(parts) > 3 {
		return 0, false, bad
	}
	limits := []int64{23, 59, 59}
	mult := []int64{3600, 60, 1}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || !allDigits(p) || n > limits[i] {
			return 0, false, bad
		}
		sec += n * mult[i]
	}
	if s[0] == '-' {
		sec = -sec
	}
	return sec, false, nil
}

var errDateRange = errors.New("timestamp out of the range of years 0 to 9999")

// formatDate renders ts (in units of 1/factor s) at a UTC offset.
func formatDate(dst []byte, format []dateTok, ts, factor, offset int64) ([]byte, error) {
	const maxSec = 253402300799 // 9999-12-31T23:59:59Z
	sec := floorDiv(ts, factor) + offset
	if sec < -62167219200 || sec > maxSec {
		return nil, errDateRange
	}
	t := time.Unix(sec, 0).UTC()
	sub := floorMod(ts, factor) * (1e9 / factor) // nanoseconds
	for _, tok := range format {
		switch tok.field {
		case 0:
			dst = append(dst, tok.lit...)
		case 'Y':
			dst = appendPadded(dst, int64(t.Year()), 4)
		case 'm':
			dst = appendPadded(dst, int64(t.Month()), 2)
		case 'd':
			dst = appendPadded(dst, int64(t.Day()), 2)
		case 'H':
			dst = appendPadded(dst, int64(t.Hour()), 2)
		case 'M':
			dst = appendPadded(dst, int64(t.Minute()), 2)
		case 'S':
			dst = appendPadded(dst, int64(t.Second()), 2)
		case 'N':
			dst = appendPadded(dst, sub, 9)
		case '3':
			dst = appendPadded(dst, sub/1e6, 3)
		case '6':
			dst = appendPadded(dst, sub/1e3, 6)
		case 'z', ':', ';':
			sign := byte('+')
			o := offset
			if o < 0 {
				sign, o = '-', -o
			}
			dst = append(dst, sign)
			dst = appendPadded(dst, o/3600, 2)
			if tok.field != 'z' {
				dst = append(dst, ':')
			}
			dst = appendPadded(dst, o%3600/60, 2)
			if tok.field == ';' {
				dst = append(dst, ':')
				dst = appendPadded(dst, o%60, 2)
			}
		}
	}
	return dst, nil
}

func appendPadded(dst []byte, n int64, width int) []byte {
	var buf [20]byte
	b := strconv.AppendInt(buf[:0], n, 10)
	for i := len(b); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, b...)
}
