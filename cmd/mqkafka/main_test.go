package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

func TestPasswdPrintsABcryptHash(t *testing.T) {
	for _, user := range []string{"", "dev1"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteString("pa:ss word\n"); err != nil {
			t.Fatal(err)
		}
		w.Close()
		var out, errOut bytes.Buffer
		args := []string{"-cost", "4"}
		if user != "" {
			args = append(args, user)
		}
		code := cmdPasswd(args, r, &out, &errOut)
		r.Close()
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		line := strings.TrimSuffix(out.String(), "\n")
		hash, ok := strings.CutPrefix(line, user+":")
		if user == "" {
			hash, ok = line, true
		}
		if !ok || bcrypt.CompareHashAndPassword([]byte(hash), []byte("pa:ss word")) != nil {
			t.Fatalf("output %q is not %q followed by a bcrypt hash of the password", line, user+":")
		}
	}
	// The hash goes into a config that check accepts.
	r, w, _ := os.Pipe()
	w.WriteString("x\n")
	w.Close()
	var out bytes.Buffer
	if code := cmdPasswd([]string{"-cost", "4", "u"}, r, &out, &bytes.Buffer{}); code != 0 {
		t.Fatal(code)
	}
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	path := testkit.WriteConfig(t, fmt.Sprintf("[broker.auth]\nusers_file = %q\n", users))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-c", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("check: %d: %s", code, stderr.String())
	}
	path = testkit.WriteConfig(t, "[broker.auth]\nallow_anonymous = false\nusers_file = \"/nonexistent/users\"\n")
	stderr.Reset()
	if code := run([]string{"check", "-c", path}, &stdout, &stderr); code != exitInvalidConfig ||
		!strings.Contains(stderr.String(), path+`:3: broker.auth.users_file: file "/nonexistent/users" does not exist`) {
		t.Fatalf("check: %d: %s", code, stderr.String())
	}
}

// TestConnectorCheckProblems: connector settings are checked with their
// lines, and no message shows the SASL password, not even librdkafka's.
func TestConnectorCheckProblems(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing-ca.CertFile")
	check := func(text string) (int, string) {
		path := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr strings.Builder
		code := run([]string{"check", "-c", path}, &stdout, &stderr)
		return code, strings.ReplaceAll(stderr.String(), path, "FILE")
	}
	const secret = "TopSecret-4711"
	base := testkit.BaseConfig(t, "127.0.0.1:9092", "t")
	text := testkit.WithConnectorTables(t, base, testkit.SSLTable(missing, "server_name_indication = \"kafka.example.com\"\n")+testkit.SASLTable("scram_sha_256", "file://"+filepath.Join(dir, "no-password")))
	code, out := check(text)
	line := func(key string) int {
		for i, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, key+" = ") {
				return i + 1
			}
		}
		t.Fatalf("no %s line", key)
		return 0
	}
	for _, w := range []string{
		fmt.Sprintf("FILE:%d: connectors[0].ssl.cacertfile: file %q does not exist", line("cacertfile"), missing),
		fmt.Sprintf("FILE:%d: connectors[0].ssl.server_name_indication: \"kafka.example.com\": librdkafka cannot send a chosen SNI host name", line("server_name_indication")),
		fmt.Sprintf("FILE:%d: connectors[0].authentication.password: file %q does not exist", line("password"), filepath.Join(dir, "no-password")),
	} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in:\n%s", w, out)
		}
	}
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}

	// librdkafka's own rejections: an unknown property, a key it cannot load.
	badKey := filepath.Join(dir, "bad.key")
	cert := filepath.Join(dir, "c.pem")
	for path, typ := range map[string]string{badKey: "PRIVATE KEY", cert: "CERTIFICATE"} {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: []byte("garbage")}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ca := testkit.NewCA(t)
	for _, tc := range []struct{ text, want string }{
		{strings.Replace(testkit.WithConnectorTables(t, base, testkit.SASLTable("scram_sha_256", secret)), `"api.version.request.timeout.ms"`, `"no.such.property" = "1"`+"\n"+`"api.version.request.timeout.ms"`, 1), "no.such.property"},
		{testkit.WithConnectorTables(t, base, testkit.SSLTable(ca.CertFile, fmt.Sprintf("certfile = %q\nkeyfile = %q\n", cert, badKey))+testkit.SASLTable("plain", secret)), "librdkafka rejects the configuration"},
		{strings.Replace(testkit.WithConnectorTables(t, base, testkit.SASLTable("plain", secret)), `"api.version.request.timeout.ms"`, `"sasl.mechanisms" = "BOGUS"`+"\n"+`"api.version.request.timeout.ms"`, 1), "librdkafka rejects the configuration"},
	} {
		code, out := check(tc.text)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("exit %d, want 2 and %q in:\n%s", code, tc.want, out)
		}
		if strings.Contains(out, secret) {
			t.Errorf("the password shows in:\n%s", out)
		}
	}
}

// TestCheckReportsEveryProblem: a typo, a wrong type and a missing required
// key are three line-numbered errors and exit code 2.
func TestCheckReportsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	text := `[broker]
listeners = [{ type = "tcp", address = ":1883" }]
data_dirr = "data"

[[connectors]]
name = "k"
bootstrap_hosts = "127.0.0.1:9092"

[[sinks]]
name = "s"
connector = "k"
max_inflight = "ten"
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	code := run([]string{"check", "-c", path}, &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	want := []string{
		path + `:3: unknown key "data_dirr"`,
		path + `:9: missing required key "topic"`,
		path + `:12: sinks[0].max_inflight: expected an integer`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(lines), len(want), stderr.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

// TestCheckSemanticProblems: references, enums, SQL and librdkafka properties
// are checked with their lines too.
func TestCheckSemanticProblems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	text := `[[connectors]]
name = "k"
bootstrap_hosts = "127.0.0.1:9092"
[connectors.properties]
"no.such.property" = "1"

[[sinks]]
name = "s"
connector = "nope"
topic = "ok"
required_acks = "all"

[[rules]]
id = "r"
sql = 'SELECT * FORM "t/#"'
actions = ["kafka_producer:s"]

[[sinks]]
name = "s2"
connector = "k"
topic = "ok"
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	if code := run([]string{"check", "-c", path}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	out := stderr.String()
	for _, w := range []string{
		`:9: sinks[0].connector: no connector named "nope"`,
		`:11: sinks[0].required_acks: "all" is not one of all_isr, leader_only, none`,
		`:15: rules[0].sql: line 1, column 10: expected FROM`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in:\n%s", w, out)
		}
	}
	// librdkafka's check runs once the rest is valid.
	fixed := strings.NewReplacer(`"nope"`, `"k"`, `"all"`, `"all_isr"`, "FORM", "FROM").Replace(text)
	if err := os.WriteFile(path, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run([]string{"check", "-c", path}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `:4: connectors[0].properties: librdkafka rejects the configuration`) || !strings.Contains(stderr.String(), "no.such.property") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
}

// TestExamplesAreValid: every shipped example passes check.
func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		var stdout, stderr strings.Builder
		if code := run([]string{"check", "-c", f}, &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit %d\n%s", f, code, stderr.String())
		}
	}
}

// TestCheckTooDeepRule: check reports a rule nested too deep at the file
// line of the offending SQL line, whether the SQL starts on the line of
// its opening quotes or on the next, and exits 2.
func TestCheckTooDeepRule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deep.toml")
	text := `[[connectors]]
name = "k"
bootstrap_hosts = "127.0.0.1:9092"

[[sinks]]
name = "s"
connector = "k"
topic = "t"

[[rules]]
id = "r"
actions = ["kafka_producer:s"]
sql = '''SELECT *
FROM "t/#"
WHERE ` + strings.Repeat("(", 257) + "1" + strings.Repeat(")", 257) + `'''

[[rules]]
id = "r2"
actions = ["kafka_producer:s"]
sql = """
SELECT *
FROM "t/#"
WHERE ` + strings.Repeat("NOT ", 257) + `true"""
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	code := run([]string{"check", "-c", path}, &stdout, &stderr)
	want := path + ":15: rules[0].sql: line 3, column 263: expressions nest deeper than 256 levels\n" +
		path + ":23: rules[1].sql: line 3, column 1031: expressions nest deeper than 256 levels"
	if code != exitInvalidConfig || strings.TrimSpace(stderr.String()) != want {
		t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr.String(), want)
	}
}

func TestRuleTestCommand(t *testing.T) {
	var out, errb strings.Builder
	code := run([]string{"rule", "test", "--sql", `SELECT payload.device as device FROM "t/#"`,
		"--topic", "t/1", "--payload", `{"device":"d7"}`, "-c", "../../examples/quickstart.toml", "--sink", "to_kafka"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), `record: {"device":"d7"}`) || !strings.Contains(out.String(), `"topic": "testtopic-in"`) {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"rule", "test", "--sql", `SELECT * FROM "t/#" WHERE payload.x = 1`, "--topic", "t/1", "--payload", `{"x":2}`}, &out, &errb); code != 1 || !strings.Contains(out.String(), "no result") {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	errb.Reset()
	if code := run([]string{"rule", "test", "--sql", `SELECT * FROM t`, "--topic", "t/1"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "line 1, column 15") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
