package rule

import (
	"fmt"
	"strings"
	"testing"
)

// TestAttackReplaceOutputBounded: a device controls the payload a rule
// reads, and replace or regex_replace given payload fields multiplied it:
// a 40KB payload made 400MB (382MB allocated), a 1MB one would ask for
// 250GB and end the process. A result over MaxStringLen is an error before
// it is built (replace) or once it passes the limit (regex_replace), and
// results at the limit still work.
func TestAttackReplaceOutputBounded(t *testing.T) {
	n := 20000
	ev := eventWith(fmt.Sprintf(`{"s":%q,"o":"x","r":%q,"small":%q}`,
		strings.Repeat("x", n), strings.Repeat("y", n), strings.Repeat("y", MaxStringLen/n)))
	for _, sql := range []string{
		`SELECT replace(payload.s, payload.o, payload.r) AS v FROM "t"`,
		`SELECT regex_replace(payload.s, 'x', payload.r) AS v FROM "t"`,
		`SELECT regex_replace(payload.s, payload.o, payload.r) AS v FROM "t"`,
	} {
		if _, err := run(t, sql, ev); err == nil || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("%s: got %v, want an error naming the limit", sql, err)
		}
		small := strings.ReplaceAll(sql, "payload.r", "payload.small")
		got, err := run(t, small, ev)
		if want := MaxStringLen/n*n + len(`{"v":""}`); err != nil || len(got) != want {
			t.Errorf("%s: got %d bytes, %v; want %d bytes", small, len(got), err, want)
		}
	}
}
