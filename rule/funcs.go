package rule

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// builtin is a SQL function. fn gets the evaluated arguments; prepare, when
// set, runs at parse time to check literal arguments and precompute from
// them (constant folding, compiled regexes) so that a bad literal is a
// syntax error, not a failure on every message.
type builtin struct {
	min, max int // max < 0: any number
	fn       func(c *evalCtx, call *callExpr, args []value) (value, error)
	prepare  func(call *callExpr) (expr, error)
}

func (b *builtin) arity() string {
	switch {
	case b.min == b.max && b.min == 1:
		return "1 argument"
	case b.min == b.max:
		return fmt.Sprintf("%d arguments", b.min)
	case b.max < 0:
		return fmt.Sprintf("at least %d arguments", b.min)
	}
	return fmt.Sprintf("%d to %d arguments", b.min, b.max)
}

// builtins is filled once at init and only read afterwards.
var builtins map[string]*builtin

func init() {
	builtins = map[string]*builtin{
		// System
		"getenv": {min: 1, max: 1, fn: fnGetenv, prepare: prepareGetenv},
		// Event
		"topic":    {min: 0, max: 1, fn: fnTopic, prepare: prepareTopic},
		"clientid": {fn: eventFunc(fClientID)},
		"username": {fn: eventFunc(fUsername)},
		"qos":      {fn: eventFunc(fQoS)},
		"peerhost": {fn: eventFunc(fPeerHost)},
		"clientip": {fn: eventFunc(fPeerHost)},
		"msgid":    {fn: eventFunc(fID)},
		"payload": {fn: func(c *evalCtx, _ *callExpr, _ []value) (value, error) {
			return strValue(c.payload), nil
		}},
		// Strings
		"lower":         {min: 1, max: 1, fn: strFunc(strings.ToLower)},
		"upper":         {min: 1, max: 1, fn: strFunc(strings.ToUpper)},
		"trim":          {min: 1, max: 2, fn: trimFunc(strings.TrimSpace, strings.Trim)},
		"ltrim":         {min: 1, max: 2, fn: trimFunc(func(s string) string { return strings.TrimLeftFunc(s, unicode.IsSpace) }, strings.TrimLeft)},
		"rtrim":         {min: 1, max: 2, fn: trimFunc(func(s string) string { return strings.TrimRightFunc(s, unicode.IsSpace) }, strings.TrimRight)},
		"reverse":       {min: 1, max: 1, fn: strFunc(reverseString)},
		"concat":        {min: 1, max: -1, fn: fnConcat},
		"substr":        {min: 2, max: 3, fn: fnSubstr},
		"split":         {min: 2, max: 3, fn: fnSplit, prepare: prepareSplit},
		"replace":       {min: 3, max: 4, fn: fnReplace, prepare: prepareReplace},
		"regex_match":   {min: 2, max: 2, fn: fnRegexMatch, prepare: prepareRegex},
		"regex_replace": {min: 3, max: 3, fn: fnRegexReplace, prepare: prepareRegex},
		"regex_extract": {min: 2, max: 2, fn: fnRegexExtract, prepare: prepareRegex},
		"sprintf":       {min: 1, max: -1, fn: fnSprintf, prepare: prepareSprintf},
		"str":           {min: 1, max: 1, fn: fnStr},
		"str_utf8":      {min: 1, max: 1, fn: fnStr},
		"strlen":        {min: 1, max: 1, fn: fnStrlen},
		"unescape":      {min: 1, max: 1, fn: fnUnescape},
		// Numbers
		"abs":   {min: 1, max: 1, fn: fnAbs},
		"ceil":  {min: 1, max: 1, fn: roundFunc(math.Ceil)},
		"floor": {min: 1, max: 1, fn: roundFunc(math.Floor)},
		"round": {min: 1, max: 1, fn: roundFunc(math.Round)},
		"int":   {min: 1, max: 1, fn: fnInt},
		"float": {min: 1, max: 1, fn: fnFloat},
		"bool":  {min: 1, max: 1, fn: fnBool},
		"power": {min: 2, max: 2, fn: floatFunc2(math.Pow)},
		"fmod":  {min: 2, max: 2, fn: floatFunc2(math.Mod)},
		"sqrt":  {min: 1, max: 1, fn: floatFunc(math.Sqrt)},
		"exp":   {min: 1, max: 1, fn: floatFunc(math.Exp)},
		"log":   {min: 1, max: 1, fn: floatFunc(math.Log)},
		"log10": {min: 1, max: 1, fn: floatFunc(math.Log10)},
		"log2":  {min: 1, max: 1, fn: floatFunc(math.Log2)},
		"mod": {min: 2, max: 2, fn: func(_ *evalCtx, _ *callExpr, a []value) (value, error) {
			return arith(opMod, a[0], a[1])
		}},
		// JSON and encodings
		"json_decode":   {min: 1, max: 1, fn: fnJSONDecode},
		"json_encode":   {min: 1, max: 1, fn: fnJSONEncode},
		"base64_encode": {min: 1, max: 1, fn: strFunc(func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) })},
		"base64_decode": {min: 1, max: 1, fn: fnBase64Decode},
		"md5":           {min: 1, max: 1, fn: hashFunc(func(b []byte) []byte { h := md5.Sum(b); return h[:] })},
		"sha":           {min: 1, max: 1, fn: hashFunc(func(b []byte) []byte { h := sha1.Sum(b); return h[:] })},
		"sha256":        {min: 1, max: 1, fn: hashFunc(func(b []byte) []byte { h := sha256.Sum256(b); return h[:] })},
		// Time
		"now_timestamp":      {min: 0, max: 1, fn: fnNowTimestamp, prepare: prepareUnitArg(0)},
		"now_rfc3339":        {min: 0, max: 1, fn: fnNowRFC3339, prepare: prepareUnitArg(0)},
		"unix_ts_to_rfc3339": {min: 1, max: 2, fn: fnUnixTsToRFC3339, prepare: prepareUnitArg(1)},
		"format_date":        {min: 3, max: 4, fn: fnFormatDate, prepare: prepareFormatDate},
		// Null and types
		"coalesce":        {min: 1, max: -1, fn: fnCoalesce},
		"is_null":         {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.k == kUndef })},
		"is_not_null":     {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.k != kUndef })},
		"is_null_var":     {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.k == kUndef || v.k == kNull })},
		"is_not_null_var": {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.k != kUndef && v.k != kNull })},
		"is_str":          {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.k == kStr })},
		"is_bool":         {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.k == kBool })},
		"is_int":          {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.k == kInt })},
		"is_float":        {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.k == kFloat })},
		"is_num":          {min: 1, max: 1, fn: isFunc(value.isNumber)},
		"is_map":          {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.typeName() == "object" })},
		"is_array":        {min: 1, max: 1, fn: isFunc(func(v value) bool { return v.typeName() == "array" })},
		// Arrays and maps
		"nth":     {min: 2, max: 2, fn: fnNth},
		"length":  {min: 1, max: 1, fn: fnLength},
		"map_get": {min: 2, max: 3, fn: fnMapGet},
	}
}

func argError(i int, want string, got value) error {
	return fmt.Errorf("argument %d must be %s, got %s", i+1, want, got.describe())
}

func argStr(args []value, i int) (string, error) {
	if args[i].k != kStr {
		return "", argError(i, "a string", args[i])
	}
	return args[i].s, nil
}

func argInt(args []value, i int) (int64, error) {
	if args[i].k != kInt {
		return 0, argError(i, "an integer", args[i])
	}
	return args[i].n, nil
}

func argNum(args []value, i int) (float64, error) {
	if !args[i].isNumber() {
		return 0, argError(i, "a number", args[i])
	}
	return args[i].float(), nil
}

// literal returns e's value when it is a constant.
func literal(e expr) (value, bool) {
	if l, ok := e.(*litExpr); ok {
		return l.v, true
	}
	return undef, false
}

// argSyntaxError reports a bad literal argument where it is written.
func argSyntaxError(call *callExpr, i int, format string, args ...any) error {
	p := call.args[i].at()
	return &SyntaxError{p.line, p.col, call.name + "(): " + fmt.Sprintf(format, args...)}
}

func fnGetenv(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	name, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	return lookupEnv(name), nil
}

// prepareGetenv reads the variable once, when the rule is compiled, as
// EMQX caches it for the life of the node.
func prepareGetenv(call *callExpr) (expr, error) {
	if v, ok := literal(call.args[0]); ok {
		if v.k != kStr {
			return nil, argSyntaxError(call, 0, "the variable name must be a string")
		}
		return &litExpr{pos: call.pos, v: lookupEnv(v.s)}, nil
	}
	return call, nil
}

func eventFunc(f eventField) func(*evalCtx, *callExpr, []value) (value, error) {
	return func(c *evalCtx, _ *callExpr, _ []value) (value, error) {
		return eventScalar(c.ev, f), nil
	}
}

func fnTopic(c *evalCtx, _ *callExpr, args []value) (value, error) {
	if len(args) == 0 {
		return strValue(c.ev.Topic), nil
	}
	n, err := argInt(args, 0)
	if err != nil {
		return undef, err
	}
	rest := c.ev.Topic
	for i := int64(1); ; i++ {
		level, tail, more := strings.Cut(rest, "/")
		if i == n {
			return strValue(level), nil
		}
		if !more || n < 1 {
			return undef, fmt.Errorf("topic %q has no level %d", c.ev.Topic, n)
		}
		rest = tail
	}
}

func prepareTopic(call *callExpr) (expr, error) {
	if len(call.args) == 1 {
		if v, ok := literal(call.args[0]); ok && (v.k != kInt || v.n < 1) {
			return nil, argSyntaxError(call, 0, "the level must be an integer from 1")
		}
	}
	return call, nil
}

func strFunc(f func(string) string) func(*evalCtx, *callExpr, []value) (value, error) {
	return func(_ *evalCtx, _ *callExpr, args []value) (value, error) {
		s, err := argStr(args, 0)
		if err != nil {
			return undef, err
		}
		return strValue(f(s)), nil
	}
}

func trimFunc(space func(string) string, chars func(string, string) string) func(*evalCtx, *callExpr, []value) (value, error) {
	return func(_ *evalCtx, _ *callExpr, args []value) (value, error) {
		s, err := argStr(args, 0)
		if err != nil {
			return undef, err
		}
		if len(args) == 1 {
			return strValue(space(s)), nil
		}
		cs, err := argStr(args, 1)
		if err != nil {
			return undef, err
		}
		return strValue(chars(s, cs)), nil
	}
}

func reverseString(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}

// fnConcat joins its arguments as strings (EMQX's concat/2), or the
// elements of one array (concat/1).
func fnConcat(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	if len(args) == 1 {
		l, ok := asList(args[0])
		if !ok {
			return undef, argError(0, "an array", args[0])
		}
		args = l
	}
	var sb strings.Builder
	for _, a := range args {
		sb.WriteString(a.toStr())
	}
	return strValue(sb.String()), nil
}

// fnSubstr is string:slice: start is 0-based, counted in characters.
func fnSubstr(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	s, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	start, err := argInt(args, 1)
	if err != nil {
		return undef, err
	}
	if start < 0 {
		return undef, errors.New("start must not be negative")
	}
	n := int64(math.MaxInt64)
	if len(args) == 3 {
		if n, err = argInt(args, 2); err != nil {
			return undef, err
		}
		if n < 0 {
			return undef, errors.New("length must not be negative")
		}
	}
	i := 0
	for ; start > 0 && i < len(s); start-- {
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
	}
	j := i
	for ; n > 0 && j < len(s); n-- {
		_, w := utf8.DecodeRuneInString(s[j:])
		j += w
	}
	return strValue(s[i:j]), nil
}

var splitModes = map[string]bool{
	"notrim": true, "leading": true, "leading_notrim": true, "trailing": true, "trailing_notrim": true,
}

func prepareSplit(call *callExpr) (expr, error) {
	if len(call.args) == 3 {
		if v, ok := literal(call.args[2]); ok && (v.k != kStr || !splitModes[v.s]) {
			return nil, argSyntaxError(call, 2, "the mode must be notrim, leading, leading_notrim, trailing or trailing_notrim")
		}
	}
	return call, nil
}

// fnSplit: without a mode, every part and no empty ones; "leading" and
// "trailing" split at the first or last separator only.
func fnSplit(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	s, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	sep, err := argStr(args, 1)
	if err != nil {
		return undef, err
	}
	mode := ""
	if len(args) == 3 {
		if mode, err = argStr(args, 2); err != nil {
			return undef, err
		}
		if !splitModes[mode] {
			return undef, fmt.Errorf("unknown mode %q", mode)
		}
	}
	var parts []string
	switch {
	case sep == "":
		parts = []string{s}
	case strings.HasPrefix(mode, "leading"):
		if a, b, ok := strings.Cut(s, sep); ok {
			parts = []string{a, b}
		} else {
			parts = []string{s}
		}
	case strings.HasPrefix(mode, "trailing"):
		if i := strings.LastIndex(s, sep); i >= 0 {
			parts = []string{s[:i], s[i+len(sep):]}
		} else {
			parts = []string{s}
		}
	default:
		parts = strings.Split(s, sep)
	}
	l := make([]value, 0, len(parts))
	for _, p := range parts {
		if p != "" || strings.HasSuffix(mode, "notrim") {
			l = append(l, strValue(p))
		}
	}
	return listValue(l), nil
}

func prepareReplace(call *callExpr) (expr, error) {
	if len(call.args) == 4 {
		if v, ok := literal(call.args[3]); ok && (v.k != kStr || (v.s != "all" && v.s != "leading" && v.s != "trailing")) {
			return nil, argSyntaxError(call, 3, "the mode must be all, leading or trailing")
		}
	}
	return call, nil
}

func fnReplace(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	var s [3]string
	for i := range s {
		var err error
		if s[i], err = argStr(args, i); err != nil {
			return undef, err
		}
	}
	mode := "all"
	if len(args) == 4 {
		var err error
		if mode, err = argStr(args, 3); err != nil {
			return undef, err
		}
	}
	src, old, repl := s[0], s[1], s[2]
	if old == "" {
		return strValue(src), nil
	}
	switch mode {
	case "all":
		if n := strings.Count(src, old); n > 0 && len(repl) > len(old) && (len(repl)-len(old)) > (MaxStringLen-len(src))/n {
			return undef, errTooLong
		}
		return strValue(strings.ReplaceAll(src, old, repl)), nil
	case "leading":
		return strValue(strings.Replace(src, old, repl, 1)), nil
	case "trailing":
		if i := strings.LastIndex(src, old); i >= 0 {
			return strValue(src[:i] + repl + src[i+len(old):]), nil
		}
		return strValue(src), nil
	}
	return undef, fmt.Errorf("unknown mode %q", mode)
}

// compiledRegex is what prepareRegex keeps from literal arguments.
type compiledRegex struct {
	re      *regexp.Regexp
	repl    string
	hasRepl bool
}

func prepareRegex(call *callExpr) (expr, error) {
	var cr compiledRegex
	if v, ok := literal(call.args[1]); ok {
		if v.k != kStr {
			return nil, argSyntaxError(call, 1, "the regular expression must be a string")
		}
		re, err := regexp.Compile(v.s)
		if err != nil {
			return nil, argSyntaxError(call, 1, "%v", err)
		}
		cr.re = re
	}
	if call.name == "regex_replace" {
		if v, ok := literal(call.args[2]); ok && v.k == kStr {
			cr.repl, cr.hasRepl = erlangReplacement(v.s), true
		}
	}
	if cr.re != nil || cr.hasRepl {
		call.data = &cr
	}
	return call, nil
}

// regex returns the compiled regex of argument 1, compiling it now when it
// was not a literal.
func regex(call *callExpr, args []value) (*regexp.Regexp, error) {
	if cr, ok := call.data.(*compiledRegex); ok && cr.re != nil {
		return cr.re, nil
	}
	pat, err := argStr(args, 1)
	if err != nil {
		return nil, err
	}
	return regexp.Compile(pat)
}

func fnRegexMatch(_ *evalCtx, call *callExpr, args []value) (value, error) {
	s, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	re, err := regex(call, args)
	if err != nil {
		return undef, err
	}
	return boolValue(re.MatchString(s)), nil
}

func fnRegexReplace(_ *evalCtx, call *callExpr, args []value) (value, error) {
	s, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	re, err := regex(call, args)
	if err != nil {
		return undef, err
	}
	var repl string
	if cr, ok := call.data.(*compiledRegex); ok && cr.hasRepl {
		repl = cr.repl
	} else {
		r, err := argStr(args, 2)
		if err != nil {
			return undef, err
		}
		repl = erlangReplacement(r)
	}
	// re.ReplaceAllString with the length checked after each match, so that
	// a too long result fails having built at most MaxStringLen bytes.
	matches := re.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return strValue(s), nil
	}
	var out []byte
	last := 0
	for _, m := range matches {
		out = re.ExpandString(append(out, s[last:m[0]]...), repl, s, m)
		if len(out) > MaxStringLen {
			return undef, errTooLong
		}
		last = m[1]
	}
	return strValue(string(append(out, s[last:]...))), nil
}

var errTooLong = fmt.Errorf("the result would be longer than %d bytes", MaxStringLen)

// erlangReplacement turns re:replace's replacement syntax (& for the match,
// \N, \gN and \g{N} for groups, \& and \\ for the characters) into Go's.
func erlangReplacement(r string) string {
	var b strings.Builder
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c == '$':
			b.WriteString("$$")
		case c == '&':
			b.WriteString("${0}")
		case c == '\\' && i+1 < len(r):
			i++
			n := r[i]
			if n == 'g' && i+1 < len(r) && r[i+1] == '{' {
				if end := strings.IndexByte(r[i:], '}'); end > 2 && allDigits(r[i+2:i+end]) {
					b.WriteString("${" + r[i+2:i+end] + "}")
					i += end
					continue
				}
			}
			if n == 'g' && i+1 < len(r) && isDigit(r[i+1]) {
				i++
				n = r[i]
			}
			if isDigit(n) {
				j := digitsEnd(r, i)
				b.WriteString("${" + r[i:j] + "}")
				i = j - 1
				continue
			}
			if n == '$' {
				b.WriteString("$$")
			} else {
				b.WriteByte(n)
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// fnRegexExtract returns the groups of the first match.
func fnRegexExtract(_ *evalCtx, call *callExpr, args []value) (value, error) {
	s, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	re, err := regex(call, args)
	if err != nil {
		return undef, err
	}
	m := re.FindStringSubmatch(s)
	l := []value{}
	for i := 1; i < len(m); i++ {
		l = append(l, strValue(m[i]))
	}
	return listValue(l), nil
}

func prepareSprintf(call *callExpr) (expr, error) {
	if v, ok := literal(call.args[0]); ok {
		if v.k != kStr {
			return nil, argSyntaxError(call, 0, "the format must be a string")
		}
		if err := checkErlangFormat(v.s, len(call.args)-1); err != nil {
			return nil, argSyntaxError(call, 0, "%v", err)
		}
	}
	return call, nil
}

func fnSprintf(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	f, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	s, err := erlangFormat(f, args[1:])
	if err != nil {
		return undef, err
	}
	return strValue(s), nil
}

func fnStr(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	return strValue(strings.ToValidUTF8(args[0].toStr(), "\uFFFD")), nil
}

func fnStrlen(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	s, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	return intValue(int64(utf8.RuneCountInString(s))), nil
}

// fnUnescape interprets C-like escapes, which SQL string literals do not.
func fnUnescape(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	s, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return undef, errors.New("trailing backslash")
		}
		i++
		switch c := s[i]; c {
		case '\\', '\'', '"', '?':
			b.WriteByte(c)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case 'a':
			b.WriteByte(7)
		case 'x':
			j := i + 1
			for j < len(s) && j < i+9 && strings.IndexByte("0123456789abcdefABCDEF", s[j]) >= 0 {
				j++
			}
			n, err := strconv.ParseUint(s[i+1:j], 16, 32)
			if err != nil || n > unicode.MaxRune {
				return undef, fmt.Errorf("bad escape \\x%s", s[i+1:j])
			}
			b.WriteRune(rune(n))
			i = j - 1
		default:
			return undef, fmt.Errorf("unrecognized escape sequence \\%c", c)
		}
	}
	return strValue(b.String()), nil
}

func fnAbs(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	switch v := args[0]; {
	case v.k == kInt && v.n != math.MinInt64:
		return intValue(abs64(v.n)), nil
	case v.k == kFloat:
		return floatValue(math.Abs(v.f)), nil
	}
	return undef, argError(0, "a number", args[0])
}

// floatToInt converts a float that Erlang would turn into an integer.
func floatToInt(f float64) (value, error) {
	if f >= -9.223372036854775e18 && f <= 9.223372036854775e18 {
		return intValue(int64(f)), nil
	}
	return undef, fmt.Errorf("%v is out of the integer range", f)
}

// roundFunc: ceil, floor and round give integers, as in Erlang.
func roundFunc(f func(float64) float64) func(*evalCtx, *callExpr, []value) (value, error) {
	return func(_ *evalCtx, _ *callExpr, args []value) (value, error) {
		if args[0].k == kInt {
			return args[0], nil
		}
		x, err := argNum(args, 0)
		if err != nil {
			return undef, err
		}
		return floatToInt(f(x))
	}
}

func floatResult(f float64) (value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return undef, errNotFinite
	}
	return floatValue(f), nil
}

func floatFunc(f func(float64) float64) func(*evalCtx, *callExpr, []value) (value, error) {
	return func(_ *evalCtx, _ *callExpr, args []value) (value, error) {
		x, err := argNum(args, 0)
		if err != nil {
			return undef, err
		}
		return floatResult(f(x))
	}
}

func floatFunc2(f func(float64, float64) float64) func(*evalCtx, *callExpr, []value) (value, error) {
	return func(_ *evalCtx, _ *callExpr, args []value) (value, error) {
		x, err := argNum(args, 0)
		if err != nil {
			return undef, err
		}
		y, err := argNum(args, 1)
		if err != nil {
			return undef, err
		}
		return floatResult(f(x, y))
	}
}

// numberFromString reads a decimal number the way Erlang's
// binary_to_integer / binary_to_float do (no hex, inf or NaN).
func numberFromString(s string) (value, error) {
	t := strings.TrimSpace(s)
	i := 0
	if i < len(t) && (t[i] == '-' || t[i] == '+') {
		i++
	}
	d := digitsEnd(t, i)
	if d == i {
		return undef, fmt.Errorf("%q is not a number", s)
	}
	if d == len(t) {
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return intValue(n), nil
		}
	} else {
		j := d
		if t[j] == '.' {
			j = digitsEnd(t, j+1)
		}
		if j < len(t) && (t[j] == 'e' || t[j] == 'E') {
			k := j + 1
			if k < len(t) && (t[k] == '+' || t[k] == '-') {
				k++
			}
			if e := digitsEnd(t, k); e > k {
				j = e
			}
		}
		if j != len(t) {
			return undef, fmt.Errorf("%q is not a number", s)
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(f, 0) {
		return undef, fmt.Errorf("%q is not a number", s)
	}
	return floatValue(f), nil
}

func fnInt(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	switch v := args[0]; v.k {
	case kInt:
		return v, nil
	case kFloat:
		return floatToInt(math.Floor(v.f))
	case kBool:
		return intValue(v.n), nil
	case kStr:
		n, err := numberFromString(v.s)
		if err != nil {
			return undef, err
		}
		if n.k == kFloat {
			return floatToInt(math.Trunc(n.f))
		}
		return n, nil
	}
	return undef, argError(0, "a number or a string", args[0])
}

func fnFloat(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	switch v := args[0]; v.k {
	case kInt, kFloat:
		return floatValue(v.float()), nil
	case kStr:
		n, err := numberFromString(v.s)
		if err != nil {
			return undef, err
		}
		return floatValue(n.float()), nil
	}
	return undef, argError(0, "a number or a string", args[0])
}

func fnBool(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	switch v := args[0]; {
	case v.k == kBool:
		return v, nil
	case v.k == kInt && (v.n == 0 || v.n == 1):
		return boolValue(v.n == 1), nil
	case v.k == kStr && (v.s == "true" || v.s == "false"):
		return boolValue(v.s == "true"), nil
	}
	return undef, argError(0, "true, false, 1, 0 or their strings", args[0])
}

func fnJSONDecode(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	s, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	if err := checkJSON(s); err != nil {
		return undef, err
	}
	return fromResult(gjson.Parse(s)), nil
}

func fnJSONEncode(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	return strValue(string(args[0].appendJSON(nil))), nil
}

func fnBase64Decode(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	s, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		// Erlang's base64:decode also takes input without padding.
		if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return undef, errors.New("not valid base64")
		}
	}
	return strValue(string(b)), nil
}

func hashFunc(sum func([]byte) []byte) func(*evalCtx, *callExpr, []value) (value, error) {
	return func(_ *evalCtx, _ *callExpr, args []value) (value, error) {
		s, err := argStr(args, 0)
		if err != nil {
			return undef, err
		}
		return strValue(hex.EncodeToString(sum([]byte(s)))), nil
	}
}

func isFunc(f func(value) bool) func(*evalCtx, *callExpr, []value) (value, error) {
	return func(_ *evalCtx, _ *callExpr, args []value) (value, error) {
		return boolValue(f(args[0])), nil
	}
}

// fnCoalesce returns the first argument that is not empty (undefined,
// null, "" or []), or "".
func fnCoalesce(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	for _, a := range args {
		switch {
		case a.k == kUndef, a.k == kNull, a.k == kStr && a.s == "":
		case a.k == kList && len(a.l) == 0, a.k == kRaw && strings.TrimSpace(a.s) == "[]":
		default:
			return a, nil
		}
	}
	return strValue(""), nil
}

// asList returns the elements of an array value.
func asList(v value) ([]value, bool) {
	switch v.k {
	case kList:
		return v.l, true
	case kRaw:
		if firstByte(v.s) != '[' {
			return nil, false
		}
		l := []value{}
		gjson.Parse(v.s).ForEach(func(_, e gjson.Result) bool {
			l = append(l, fromResult(e))
			return true
		})
		return l, true
	}
	return nil, false
}

func fnNth(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	n, err := argInt(args, 0)
	if err != nil {
		return undef, err
	}
	l, ok := asList(args[1])
	if !ok {
		return undef, argError(1, "an array", args[1])
	}
	if n < 1 || n > int64(len(l)) {
		return undef, fmt.Errorf("no element %d in an array of %d", n, len(l))
	}
	return l[n-1], nil
}

func fnLength(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	l, ok := asList(args[0])
	if !ok {
		return undef, argError(0, "an array", args[0])
	}
	return intValue(int64(len(l))), nil
}

// fnMapGet reads a dotted key path from an object.
func fnMapGet(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	key, err := argStr(args, 0)
	if err != nil {
		return undef, err
	}
	v := walk(args[1], strings.Split(key, "."))
	if v.k == kUndef && len(args) == 3 {
		return args[2], nil
	}
	return v, nil
}

// Time functions.

var timeUnits = map[string]int64{
	"second": 1, "millisecond": 1e3, "microsecond": 1e6, "nanosecond": 1e9,
}

func unitArg(args []value, i int) (int64, error) {
	if len(args) <= i {
		return 1, nil
	}
	if args[i].k == kStr {
		if f, ok := timeUnits[args[i].s]; ok {
			return f, nil
		}
	}
	return 0, fmt.Errorf("invalid time unit %s", args[i].describe())
}

func prepareUnitArg(i int) func(*callExpr) (expr, error) {
	return func(call *callExpr) (expr, error) {
		if len(call.args) > i {
			if v, ok := literal(call.args[i]); ok {
				if _, err := unitArg([]value{v}, 0); err != nil {
					return nil, argSyntaxError(call, i, "%v (second, millisecond, microsecond or nanosecond)", err)
				}
			}
		}
		return call, nil
	}
}

func nowIn(factor int64) int64 {
	t := time.Now()
	return t.Unix()*factor + int64(t.Nanosecond())/(1e9/factor)
}

func fnNowTimestamp(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	f, err := unitArg(args, 0)
	if err != nil {
		return undef, err
	}
	return intValue(nowIn(f)), nil
}

func rfc3339(ts, factor int64) (value, error) {
	sec, sub := floorDiv(ts, factor), floorMod(ts, factor)
	t := time.Unix(sec, sub*(1e9/factor))
	if t.Year() < 0 || t.Year() > 9999 {
		return undef, fmt.Errorf("timestamp %d out of range", ts)
	}
	layout := "2006-01-02T15:04:05"
	switch factor {
	case 1e3:
		layout += ".000"
	case 1e6:
		layout += ".000000"
	case 1e9:
		layout += ".000000000"
	}
	// Erlang writes a local time at offset 0 as +00:00, not Z.
	return strValue(t.Local().Format(layout + "-07:00")), nil
}

func fnNowRFC3339(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	f, err := unitArg(args, 0)
	if err != nil {
		return undef, err
	}
	return rfc3339(nowIn(f), f)
}

func fnUnixTsToRFC3339(_ *evalCtx, _ *callExpr, args []value) (value, error) {
	ts, err := argInt(args, 0)
	if err != nil {
		return undef, err
	}
	f, err := unitArg(args, 1)
	if err != nil {
		return undef, err
	}
	return rfc3339(ts, f)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// preparedDate keeps what format_date's literal arguments allow to compute once.
type preparedDate struct {
	format    []dateTok
	hasFormat bool
	offset    int64
	hasOffset bool
}

func prepareFormatDate(call *callExpr) (expr, error) {
	if _, err := prepareUnitArg(0)(call); err != nil {
		return nil, err
	}
	var pd preparedDate
	if v, ok := literal(call.args[1]); ok {
		off, local, err := parseOffset(v)
		if err != nil {
			return nil, argSyntaxError(call, 1, "%v", err)
		}
		pd.offset, pd.hasOffset = off, !local
	}
	if v, ok := literal(call.args[2]); ok {
		if v.k != kStr {
			return nil, argSyntaxError(call, 2, "the format must be a string")
		}
		pd.format, pd.hasFormat = parseDateFormat(v.s), true
	}
	call.data = &pd
	return call, nil
}

// fnFormatDate is EMQX's format_date(Unit, Offset, Format[, Time]).
func fnFormatDate(_ *evalCtx, call *callExpr, args []value) (value, error) {
	f, err := unitArg(args, 0)
	if err != nil {
		return undef, err
	}
	pd, _ := call.data.(*preparedDate)
	var off int64
	if pd != nil && pd.hasOffset {
		off = pd.offset
	} else if off, _, err = parseOffset(args[1]); err != nil {
		return undef, err
	}
	var format []dateTok
	if pd != nil && pd.hasFormat {
		format = pd.format
	} else {
		s, err := argStr(args, 2)
		if err != nil {
			return undef, err
		}
		format = parseDateFormat(s)
	}
	ts := nowIn(f)
	if len(args) == 4 {
		if ts, err = argInt(args, 3); err != nil {
			return undef, err
		}
	}
	b, err := formatDate(nil, format, ts, f, off)
	if err != nil {
		return undef, err
	}
	return strValue(string(b)), nil
}
