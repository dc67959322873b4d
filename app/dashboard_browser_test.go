package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// chromiumPath finds Debian's chromium. The test fails rather than skips
// without it, so that CI cannot pass without having run the dashboard.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MQKAFKA_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatal("the dashboard's browser test needs chromium: apt-get update && apt-get install -y chromium (or set MQKAFKA_CHROMIUM to a Chromium binary)")
	return ""
}

// browser starts a headless chromium with a fresh profile and collects
// what the page logs and every URL it requests.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	console  []string
	requests []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	b := &browser{ctx: ctx}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		wg.Wait()
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	requests := chromedp.Events(ctx, network.RequestWillBeSent)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type != "error" && m.Type != "warning" && !m.IsException() {
				continue
			}
			b.mu.Lock()
			b.console = append(b.console, fmt.Sprintf("%s %s (%s %s:%d)", m.Type, m.Text, m.Source, m.URL, m.Line))
			b.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range requests {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.requests = append(b.requests, ev.Request.URL)
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("%s: %v\nconsole:\n%s", what, err, strings.Join(b.messages(), "\n"))
	}
}

// wait polls a JavaScript predicate until it holds.
func (b *browser) wait(t *testing.T, what, predicate string) {
	t.Helper()
	err := chromedp.Do(b.ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		page, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.hash + '\n' + document.body.innerText`))
		t.Fatalf("waiting for %s: %v\npage:\n%s\nconsole:\n%s", what, err, page, strings.Join(b.messages(), "\n"))
	}
}

func (b *browser) eval(t *testing.T, expr string) string {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func (b *browser) messages() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// screenshot saves the page under the test's artifact directory and, with
// MQKAFKA_SCREENSHOT_DIR set, a copy there as mqkafka-<name>.png.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(t.ArtifactDir(), "dashboard-"+name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the %s page: %s", name, p)
	if dir := os.Getenv("MQKAFKA_SCREENSHOT_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "mqkafka-"+name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// background keeps traffic flowing both ways so that the rates, charts and
// flow edges have something to show: MQTT publishes on t/1 and Kafka
// records into the source's topic, until the test ends.
func background(t *testing.T, a *App, kafkaAddr string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	pub := testkit.MQTTClient(t, a.broker.Addrs()[0], "load", nil)
	sub := testkit.MQTTClient(t, a.broker.Addrs()[0], "watcher", func(*paho.Publish) {})
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, err := sub.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "down/#"}, {Topic: "echo/#"}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.DefaultProduceTopic("dash-in"))
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = pub.Publish(pctx, &paho.Publish{Topic: "t/1", QoS: 1, Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
			pcancel()
			time.Sleep(40 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		defer cl.Close()
		for i := 0; ctx.Err() == nil; i++ {
			cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "dev%d", i%3), Value: fmt.Appendf(nil, `{"cmd":%d}`, i)}, nil)
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

// TestDashboardBrowser drives the dashboard in chromium as an operator
// would: log in, watch a sink count publishes, create a sink and a rule
// through the forms (their validation errors shown at the fields) and see
// the rule deliver, run the rule tester and the connectivity test, and be
// sent back to the login form when the token stops working.
func TestDashboardBrowser(t *testing.T) {
	b := newBrowser(t)
	a, kafkaAddr := dashboardApp(t)
	base := "http://" + a.admin.Addr()

	b.do(t, "open the dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do(t, "log in with a wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "wrong"), chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
	b.wait(t, "the refusal", `document.querySelector('#login-error:not([hidden])')?.textContent.includes('not accepted')`)
	b.do(t, "log in", chromedp.SendKeys(chromedp.CSS("#token"), "s3cret"), chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
	b.wait(t, "the overview", `!document.getElementById('nav').hidden && !!document.querySelector('.card[data-k=kafka-out]')`)
	if got := b.eval(t, `sessionStorage.getItem('mqkafka.token') + ' ' + location.href`); got != "s3cret "+base+"/" {
		t.Fatalf("token and URL after login: %q", got)
	}

	// The sink's success counter follows the publishes.
	b.do(t, "open the sinks", chromedp.Evaluate[chromedp.Void](`location.hash = '#/sinks'`))
	b.wait(t, "sink s1 at 0", `document.querySelector('tr[data-sink="s1"] td.success')?.textContent === '0'`)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "browser-test", nil)
	for i := range 20 {
		testkit.Publish(t, c, "t/1", 1, fmt.Appendf(nil, `{"i":%d}`, i))
	}
	b.wait(t, "sink s1 at 20", `document.querySelector('tr[data-sink="s1"] td.success')?.textContent === '20'`)

	background(t, a, kafkaAddr)
	b.do(t, "open the overview", chromedp.Evaluate[chromedp.Void](`location.hash = '#/'`))
	b.wait(t, "rates on the overview", `['mqtt-in', 'kafka-out', 'kafka-in', 'mqtt-out'].every((k) =>
		document.querySelector('.card[data-k=' + k + '] .value')?.textContent !== '0')`)
	b.do(t, "collect samples for the chart", chromedp.Sleep(6*time.Second))
	b.wait(t, "the throughput chart", `document.querySelectorAll('.chart polyline').length === 4`)
	b.screenshot(t, "overview")

	b.do(t, "open the flows", chromedp.Evaluate[chromedp.Void](`location.hash = '#/flows'`))
	b.wait(t, "live edges", `document.querySelectorAll('#flow-egress .edge.on').length >= 3 &&
		document.querySelectorAll('#flow-ingress .edge.on').length >= 2 &&
		[...document.querySelectorAll('#flow-ingress .node .label')].some((n) => n.textContent === 'echo/1')`)
	b.screenshot(t, "flows")

	// A sink through the form: a bad topic is answered at its field.
	b.do(t, "open the sink form", chromedp.Evaluate[chromedp.Void](`location.hash = '#/new/sinks'`), chromedp.WaitVisible(chromedp.CSS("#entry-form")))
	b.do(t, "fill in the sink",
		chromedp.SetValue(chromedp.CSS(`[name="f:name"]`), "s_new"),
		chromedp.SetValue(chromedp.CSS(`[name="f:connector"]`), "k"),
		chromedp.SetValue(chromedp.CSS(`[name="f:topic"]`), "bad topic!"),
		chromedp.SetValue(chromedp.CSS(`[name="f:buffer.mode"]`), "disk"),
		chromedp.Click(chromedp.CSS(`#entry-form button[type=submit]`)))
	b.wait(t, "the topic's problem", `!document.getElementById('problems').hidden &&
		document.querySelector('.field[data-field="topic"].invalid .field-error')?.textContent.includes('invalid Kafka topic name')`)
	b.screenshot(t, "sink-form")
	b.do(t, "fix the topic", chromedp.SetValue(chromedp.CSS(`[name="f:topic"]`), "dash-new"), chromedp.Click(chromedp.CSS(`#entry-form button[type=submit]`)))
	b.wait(t, "the new sink's page", `location.hash === '#/sinks/s_new' && document.querySelector('h1')?.textContent.includes('Sink s_new')`)

	// A rule through the form: a SQL error is shown, then the rule delivers.
	b.do(t, "open the rule form", chromedp.Evaluate[chromedp.Void](`location.hash = '#/new/rules'`), chromedp.WaitVisible(chromedp.CSS("#rule-form")))
	b.do(t, "fill in the rule",
		chromedp.SetValue(chromedp.CSS("#rule-id"), "r_new"),
		chromedp.SetValue(chromedp.CSS("#rule-sql"), `SELEC payload.v AS v FROM "new/#"`),
		chromedp.Click(chromedp.CSS(`input[name=action][value="kafka_producer:s_new"]`)),
		chromedp.Click(chromedp.CSS(`#rule-form button[type=submit]`)))
	b.wait(t, "the SQL's problem", `!!document.querySelector('.field[data-field="sql"].invalid .field-error:not([hidden])')`)
	b.do(t, "fix the SQL",
		chromedp.SetValue(chromedp.CSS("#rule-sql"), `SELECT payload.v AS v, clientid FROM "new/#"`),
		chromedp.Click(chromedp.CSS(`#rule-form button[type=submit]`)))
	b.wait(t, "the new rule's page", `location.hash === '#/rules/r_new' && !!document.querySelector('#rule-form #rule-id[readonly]')`)
	testkit.Publish(t, c, "new/1", 1, []byte(`{"v":42}`))
	recs := testkit.Consume(t, kafkaAddr, "dash-new", 1, 20*time.Second)
	if len(recs) != 1 || !strings.Contains(string(recs[0].Value), `"v":42`) {
		t.Fatalf("dash-new holds %v", recs)
	}

	// The rule tester on the rule's page.
	b.do(t, "run the rule tester",
		chromedp.SetValue(chromedp.CSS("#test-topic"), "new/7"),
		chromedp.SetValue(chromedp.CSS("#test-payload"), `{"v": 7}`),
		chromedp.SetValue(chromedp.CSS("#test-clientid"), "dev-7"),
		chromedp.SetValue(chromedp.CSS("#test-sink"), "s_new"),
		chromedp.Click(chromedp.CSS(`#test-form button[type=submit]`)))
	b.wait(t, "the tester's answer", `document.getElementById('test-outcome')?.textContent === 'ok' &&
		document.getElementById('test-record').textContent.includes('"v": 7') &&
		document.getElementById('test-kafka').textContent.includes('dash-new') &&
		document.getElementById('test-kafka').textContent.includes('dev-7')`)
	b.screenshot(t, "rule")

	b.do(t, "test the connector", chromedp.Evaluate[chromedp.Void](`location.hash = '#/connectors'`),
		chromedp.Click(chromedp.CSS(`button[data-action=test][data-name="k"]`)))
	b.wait(t, "the connectivity answer", `document.querySelector('tr[data-connector="k"] .test-result.ok')?.textContent === 'connected'`)
	b.screenshot(t, "connectors")
	b.do(t, "edit the connector", chromedp.Evaluate[chromedp.Void](`location.hash = '#/connectors/k'`), chromedp.WaitVisible(chromedp.CSS("#entry-form")))
	b.wait(t, "the connector's keys", fmt.Sprintf(`document.querySelector('[name="f:bootstrap_hosts"]').value === %q &&
		document.querySelector('[name="f:properties"]').value.includes('api.version.request.timeout.ms = 10000')`, kafkaAddr))

	// A source's topic mapping is edited in its rows.
	b.do(t, "edit the source", chromedp.Evaluate[chromedp.Void](`location.hash = '#/sources/src1/edit'`), chromedp.WaitVisible(chromedp.CSS("#entry-form")))
	b.do(t, "change the MQTT topic",
		chromedp.SetValue(chromedp.CSS(`[data-rows="topic_mapping"] tbody tr [data-col="mqtt_topic"]`), "down2/${.key}"),
		chromedp.Click(chromedp.CSS(`#entry-form button[type=submit]`)))
	b.wait(t, "the source's page", `location.hash === '#/sources/src1' && document.body.innerText.includes('down2/\${.key}')`)
	if e := apiJSON(t, a, "GET", "/api/v1/sources/src1/entry", "", 200); at(e, "topic_mapping", 0, "mqtt_topic") != "down2/${.key}" || at(e, "offset_reset_policy") != "earliest" {
		t.Fatalf("source after the edit: %v", e)
	}
	b.screenshot(t, "source")

	b.do(t, "open sink s1", chromedp.Evaluate[chromedp.Void](`location.hash = '#/sinks/s1'`))
	b.wait(t, "its partition queues", `[...document.querySelectorAll('#partitions tbody tr td:nth-child(2)')].map((td) => td.textContent).join() === '0,1,2' &&
		document.querySelectorAll('.chart polyline').length === 2`)
	b.screenshot(t, "sink")

	// A token that stops working leads back to the login form.
	b.do(t, "spoil the token", chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem('mqkafka.token', 'stale')`))
	b.wait(t, "the login form", `!!document.querySelector('#login-error:not([hidden])') && sessionStorage.getItem('mqkafka.token') === null`)

	for _, m := range b.messages() {
		// The browser logs the API's deliberate 400 and 401 answers.
		if strings.Contains(m, "(network ") && (strings.Contains(m, "status of 400") || strings.Contains(m, "status of 401")) {
			continue
		}
		t.Errorf("console: %s", m)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range b.requests {
		if !strings.HasPrefix(u, base+"/") && u != "about:blank" {
			t.Errorf("the dashboard requested %s", u)
		}
	}
}

// TestDashboardFlowRatesAgree: at a steady 15 publishes a second every
// edge of the MQTT → Kafka flow shows the same rate, because all of them
// come from the server's samples over the same window; and a reloaded
// page draws the last minutes at once from the server's history.
func TestDashboardFlowRatesAgree(t *testing.T) {
	b := newBrowser(t)
	a, _ := dashboardApp(t)
	base := "http://" + a.admin.Addr()
	pub := testkit.MQTTClient(t, a.broker.Addrs()[0], "steady", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / 15)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = pub.Publish(pctx, &paho.Publish{Topic: "t/1", QoS: 1, Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
			pcancel()
		}
	}()
	b.do(t, "open the dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do(t, "log in", chromedp.SendKeys(chromedp.CSS("#token"), "s3cret"), chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
	b.do(t, "open the flows", chromedp.Evaluate[chromedp.Void](`location.hash = '#/flows'`))
	labels := `[...document.querySelectorAll('#flow-egress .edge')].map((e) => e.querySelector('text.rate')?.textContent ?? '')`
	b.wait(t, "three edges at one steady rate", `(() => { const l = `+labels+`;
		return l.length === 3 && l.every((x) => x === l[0]) && Math.abs(parseFloat(l[0]) - 15) <= 1; })()`)
	b.screenshot(t, "flows-steady")

	testkit.WaitFor(t, 30*time.Second, "20 s of server samples", func() bool {
		var h struct {
			Times []int64 `json:"times_unix_ms"`
		}
		_, body := call(t, a, "GET", "/api/v1/rates", "s3cret", "")
		return json.Unmarshal([]byte(body), &h) == nil && len(h.Times) >= 20
	})
	b.do(t, "open the overview", chromedp.Evaluate[chromedp.Void](`location.hash = '#/'`))
	b.do(t, "reload it", chromedp.Reload())
	b.wait(t, "the overview", `!!document.querySelector('.card[data-k=kafka-out]')`)
	// Polls alone would have drawn at most a point or two by now.
	points := b.eval(t, `String(document.querySelector('.chart polyline.s1')?.getAttribute('points').split(' ').length ?? 0)`)
	if n, err := strconv.Atoi(points); err != nil || n < 19 {
		t.Fatalf("the chart right after a reload has %s points, want the server's 20 samples or more", points)
	}
}
