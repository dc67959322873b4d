package rule

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// directive is one ~ control sequence of an Erlang io_lib:format string.
type directive struct {
	width, prec         int
	widthArg, precArg   bool // '*': taken from the arguments
	hasWidth, hasPrec   bool
	pad                 byte
	control             byte
	literalLen, nextPos int
}

// nextDirective finds the next ~ in f from i; ok false at the end.
func nextDirective(f string, i int) (d directive, ok bool, err error) {
	j := strings.IndexByte(f[i:], '~')
	if j < 0 {
		return d, false, nil
	}
	d.literalLen = j
	i += j + 1
	d.pad = ' '
	num := func(dst *int, star *bool, has *bool) {
		if i < len(f) && f[i] == '*' {
			*star, *has = true, true
			i++
			return
		}
		neg := i < len(f) && f[i] == '-'
		s := i
		if neg {
			i++
		}
		e := digitsEnd(f, i)
		if e == i {
			i = s
			return
		}
		n, _ := strconv.Atoi(f[i:e])
		if n > 1<<16 {
			n = 1 << 16
		}
		if neg {
			n = -n
		}
		*dst, *has = n, true
		i = e
	}
	num(&d.width, &d.widthArg, &d.hasWidth)
	if i < len(f) && f[i] == '.' {
		i++
		num(&d.prec, &d.precArg, &d.hasPrec)
		if i < len(f) && f[i] == '.' && i+1 < len(f) {
			d.pad = f[i+1]
			i += 2
		}
	}
	for i < len(f) && strings.IndexByte("tlkK", f[i]) >= 0 {
		i++
	}
	if i >= len(f) {
		return d, false, errors.New("format ends inside a ~ directive")
	}
	d.control = f[i]
	d.nextPos = i + 1
	if strings.IndexByte("~ncswpbB#fegi", d.control) < 0 {
		return d, false, fmt.Errorf("unsupported format directive ~%c", d.control)
	}
	return d, true, nil
}

// argCount is how many arguments d consumes.
func (d directive) argCount() int {
	n := 0
	if d.widthArg {
		n++
	}
	if d.precArg {
		n++
	}
	if d.control != '~' && d.control != 'n' {
		n++
	}
	return n
}

// checkErlangFormat validates a literal format against the number of
// arguments given, at parse time.
func checkErlangFormat(f string, nargs int) error {
	need := 0
	for i := 0; ; {
		d, ok, err := nextDirective(f, i)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		need += d.argCount()
		i = d.nextPos
	}
	if need != nargs {
		return fmt.Errorf("the format needs %d arguments, got %d", need, nargs)
	}
	return nil
}

// erlangFormat implements the part of io_lib:format that rules use:
// ~s ~p ~w ~b ~B ~# ~f ~e ~g ~c ~i ~n ~~ with width, precision and pad.
func erlangFormat(f string, args []value) (string, error) {
	var out []byte
	i := 0
	take := func() (value, error) {
		if len(args) == 0 {
			return undef, errors.New("not enough arguments for the format")
		}
		v := args[0]
		args = args[1:]
		return v, nil
	}
	for {
		d, ok, err := nextDirective(f, i)
		if err != nil {
			return "", err
		}
		if !ok {
			out = append(out, f[i:]...)
			break
		}
		out = append(out, f[i:i+d.literalLen]...)
		i = d.nextPos
		for _, star := range []struct {
			on  bool
			dst *int
		}{{d.widthArg, &d.width}, {d.precArg, &d.prec}} {
			if star.on {
				v, err := take()
				if err != nil {
					return "", err
				}
				if v.k != kInt || v.n > 1<<16 || v.n < -(1<<16) {
					return "", errors.New("* needs an integer argument")
				}
				*star.dst = int(v.n)
			}
		}
		var s []byte
		switch d.control {
		case '~':
			s = []byte{'~'}
		case 'n':
			s = []byte{'\n'}
		default:
			v, err := take()
			if err != nil {
				return "", err
			}
			if s, err = formatOne(d, v); err != nil {
				return "", err
			}
		}
		out = padField(out, s, d)
	}
	if len(args) > 0 {
		return "", errors.New("too many arguments for the format")
	}
	return string(out), nil
}

func padField(out, s []byte, d directive) []byte {
	if !d.hasWidth {
		return append(out, s...)
	}
	w := d.width
	left := w < 0
	if left {
		w = -w
	}
	n := utf8.RuneCount(s)
	if n >= w {
		return append(out, s...)
	}
	if left {
		out = append(out, s...)
	}
	for ; n < w; n++ {
		out = append(out, d.pad)
	}
	if !left {
		out = append(out, s...)
	}
	return out
}

func formatOne(d directive, v value) ([]byte, error) {
	prec := d.prec
	switch d.control {
	case 'c':
		if v.k != kInt || v.n < 0 || v.n > utf8.MaxRune {
			return nil, fmt.Errorf("~c needs a character code, got %s", v.describe())
		}
		n := 1
		if d.hasPrec && prec > 0 {
			n = prec
		}
		return []byte(strings.Repeat(string(rune(v.n)), n)), nil
	case 's':
		var s string
		switch v.k {
		case kStr:
			s = v.s
		case kBool, kNull, kUndef:
			s = v.toStr()
		case kList:
			s = v.toStr()
		default:
			return nil, fmt.Errorf("~s needs a string, got %s", v.describe())
		}
		if d.hasPrec && prec >= 0 && utf8.RuneCountInString(s) > prec {
			s = string([]rune(s)[:prec])
		}
		return []byte(s), nil
	case 'w', 'p':
		return appendTerm(nil, v), nil
	case 'i':
		return nil, nil
	case 'b', 'B', '#':
		if v.k != kInt {
			return nil, fmt.Errorf("~%c needs an integer, got %s", d.control, v.describe())
		}
		base := 10
		if d.hasPrec {
			base = prec
		}
		if base < 2 || base > 36 {
			return nil, fmt.Errorf("base %d out of range", base)
		}
		s := strconv.FormatInt(v.n, base)
		if d.control != 'b' {
			s = strings.ToUpper(s)
		}
		if d.control == '#' {
			neg := strings.HasPrefix(s, "-")
			s = strconv.Itoa(base) + "#" + strings.TrimPrefix(s, "-")
			if neg {
				s = "-" + s
			}
		}
		return []byte(s), nil
	default: // f e g; integers are taken too, where Erlang insists on floats
		if !v.isNumber() {
			return nil, fmt.Errorf("~%c needs a number, got %s", d.control, v.describe())
		}
		x := v.float()
		if !d.hasPrec {
			prec = 6
		}
		if prec < 0 || prec > 64 {
			return nil, fmt.Errorf("precision %d out of range", prec)
		}
		switch d.control {
		case 'f':
			return strconv.AppendFloat(nil, x, 'f', prec, 64), nil
		case 'e':
			return erlangExp(strconv.AppendFloat(nil, x, 'e', max(prec-1, 0), 64)), nil
		}
		// ~g is ~f between 0.1 and 10000, with prec significant digits.
		if a := math.Abs(x); a >= 0.1 && a < 10000 {
			intDigits := int(math.Floor(math.Log10(a))) + 1
			return strconv.AppendFloat(nil, x, 'f', max(prec-intDigits, 0), 64), nil
		}
		return erlangExp(strconv.AppendFloat(nil, x, 'e', max(prec-1, 0), 64)), nil
	}
}

// erlangExp writes exponents as Erlang does: e+1, not e+01.
func erlangExp(b []byte) []byte {
	i := strings.IndexByte(string(b), 'e')
	if i < 0 || i+2 >= len(b) {
		return b
	}
	j := i + 2
	for j < len(b)-1 && b[j] == '0' {
		j++
	}
	return append(b[:i+2], b[j:]...)
}

// appendTerm writes v as Erlang's ~w would show the term EMQX holds.
func appendTerm(dst []byte, v value) []byte {
	switch v.k {
	case kStr:
		dst = append(dst, "<<"...)
		dst = AppendJSONString(dst, v.s)
		return append(dst, ">>"...)
	case kFloat:
		return append(dst, erlangShortestFloat(v.f)...)
	case kList:
		dst = append(dst, '[')
		for i, e := range v.l {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendTerm(dst, e)
		}
		return append(dst, ']')
	case kRaw, kObj:
		if l, ok := asList(v); ok {
			return appendTerm(dst, listValue(l))
		}
		pairs, _ := asObject(v)
		dst = append(dst, "#{"...)
		for i := 0; i+1 < len(pairs); i += 2 {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendTerm(dst, pairs[i])
			dst = append(dst, " => "...)
			dst = appendTerm(dst, pairs[i+1])
		}
		return append(dst, '}')
	}
	return append(dst, v.toStr()...)
}

// erlangShortestFloat is how Erlang prints a float term: 2.0, 1.0e10.
func erlangShortestFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	mant, exp, hasExp := strings.Cut(s, "e")
	if !strings.ContainsAny(mant, ".nN") {
		mant += ".0"
	}
	if !hasExp {
		return mant
	}
	exp = strings.TrimPrefix(exp, "+")
	neg := strings.HasPrefix(exp, "-")
	exp = strings.TrimLeft(strings.TrimPrefix(exp, "-"), "0")
	if neg {
		exp = "-" + exp
	}
	return mant + "e" + exp
}
