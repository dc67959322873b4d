package bench

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is everything one invocation measured; it is results.json.
type Report struct {
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Host      Host      `json:"host"`
	Command   []string  `json:"command,omitempty"`
	FileLimit uint64    `json:"file_limit"`
	Runs      []*Result `json:"runs"`
	Targets   []Target  `json:"targets,omitempty"`
}

// Host describes where the numbers were taken.
type Host struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go"`
	Kafka     string `json:"kafka"`
	Broker    string `json:"broker"`
}

// Result is one run.
type Result struct {
	Name     string `json:"name"`
	Scenario string `json:"scenario"`
	Params   Params `json:"params"`
	Skipped  string `json:"skipped,omitempty"`
	Error    string `json:"error,omitempty"`

	// Sent and Acked are counted at the publishing side (PUBACKs, or
	// librdkafka delivery reports for kafka-raw); Refused are negative
	// acknowledgements. Delivered, Lost and Duplicates are counted at the
	// far end by message id: Lost are acknowledged ids that never arrived.
	Sent       int64 `json:"sent"`
	Acked      int64 `json:"acked"`
	Refused    int64 `json:"refused"`
	Delivered  int64 `json:"delivered"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	// Seconds is from the first publish to the last arrival; Rate is
	// Delivered over it: the end-to-end throughput.
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
	// PublishRate is acknowledgements per second at the publishing side.
	PublishRate float64 `json:"publish_rate"`

	// Puback is PUBACK latency; at a fixed rate it is measured from when
	// each publish was due, so that a stall counts for every publish queued
	// behind it, and PubackFromSend from when it was actually written.
	// SendLag is how late the bench's writers were against their schedule:
	// if it is large, the bench, not the broker, fell behind.
	Puback         *Latency `json:"puback_latency_ms,omitempty"`
	PubackFromSend *Latency `json:"puback_from_send_latency_ms,omitempty"`
	SendLag        *Latency `json:"send_lag_ms,omitempty"`
	E2E            *Latency `json:"e2e_latency_ms,omitempty"`

	// CPUSeconds is the process under test over the measured window:
	// the mqkafka child, or for kafka-raw librdkafka's threads in the bench.
	CPUSeconds      *float64 `json:"cpu_seconds,omitempty"`
	KafkaCPUSeconds *float64 `json:"kafka_cpu_seconds,omitempty"`
	BenchCPUSeconds float64  `json:"bench_cpu_seconds"`
	// OtherCPUSeconds is what the rest of the machine used meanwhile:
	// more than a little means something else competed for the cores and
	// the run's figures are disturbed.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	// PeakRSSBytes is the mqkafka child's VmHWM.
	PeakRSSBytes     *int64   `json:"peak_rss_bytes,omitempty"`
	AllocsPerMsg     *float64 `json:"allocs_per_msg,omitempty"`
	AllocBytesPerMsg *float64 `json:"alloc_bytes_per_msg,omitempty"`
	GCs              *int64   `json:"gcs,omitempty"`

	// Ratios compare the rate with the ceilings of the same invocation
	// ("kafka_raw", "broker_raw", "min_ceiling") and with memory mode
	// ("memory"); a recovery drain is compared with kafka-raw.
	Ratios map[string]float64 `json:"ratios,omitempty"`
	Extra  map[string]any     `json:"extra,omitempty"`
	// Histograms are the HDR histograms (µs), base64 of the V2 compressed
	// encoding, for tools that want more than the percentiles.
	Histograms map[string]string `json:"hdr_histograms,omitempty"`
	Profiles   []string          `json:"profiles,omitempty"`
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// Target is one of issue 7's performance targets, checked against the runs
// of this invocation that it applies to.
type Target struct {
	Name   string  `json:"name"`
	Run    string  `json:"run"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
	Detail string  `json:"detail,omitempty"`
}

func newReport(o Options) *Report {
	r := &Report{Started: time.Now(), Command: o.Command, Host: Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Kafka: "kfake (child process)", Broker: "mqkafka (child process)"}}
	if o.Kafka != "" {
		r.Host.Kafka = o.Kafka
	}
	if o.Broker != "" {
		r.Host.Broker = o.Broker
	}
	return r
}

func newResult(name, scenario string, p Params) *Result {
	p.DurationS = p.Duration.Seconds()
	p.LingerMS = float64(p.Linger) / float64(time.Millisecond)
	return &Result{Name: name, Scenario: scenario, Params: p}
}

func (res *Result) fail(err error) {
	if err != nil && res.Error == "" {
		res.Error = err.Error()
	}
}

func (res *Result) fillLoad(l loadResult) {
	res.Sent, res.Acked, res.Refused = l.sent, l.acked, l.nacked
	if d := l.last.Sub(l.first).Seconds(); d > 0 && l.last.After(l.first) {
		res.PublishRate = float64(l.acked) / d
	}
	if l.puback != nil {
		res.Puback = latencyOf(l.puback)
		res.hist("puback", l.puback)
	}
	res.PubackFromSend = latencyOf(l.pubackFromSend)
	res.SendLag = latencyOf(l.lag)
}

func (res *Result) hist(name string, h *hdrhistogram.Histogram) {
	if h == nil || h.TotalCount() == 0 {
		return
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return
	}
	if res.Histograms == nil {
		res.Histograms = map[string]string{}
	}
	res.Histograms[name] = base64.StdEncoding.EncodeToString(b)
}

func latencyOf(h *hdrhistogram.Histogram) *Latency {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return &Latency{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)), P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)),
		Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}

func (res *Result) ratio(name string, v float64) {
	if res.Ratios == nil {
		res.Ratios = map[string]float64{}
	}
	res.Ratios[name] = v
}

// finish computes ratios against the ceilings and checks the targets.
func (r *Report) finish() {
	r.Finished = time.Now()
	find := func(scenario string, match func(*Result) bool) *Result {
		for _, x := range r.Runs {
			if x.Scenario == scenario && x.Error == "" && x.Skipped == "" && x.Rate > 0 && match(x) {
				return x
			}
		}
		return nil
	}
	for _, x := range r.Runs {
		if x.Error != "" || x.Skipped != "" || x.Rate <= 0 {
			continue
		}
		p := x.Params
		kr := find(ScenarioKafkaRaw, func(c *Result) bool {
			return c.Params.Size == p.Size && c.Params.Clients == p.Clients && c.Params.Partitions == p.Partitions
		})
		br := find(ScenarioBrokerRaw, func(c *Result) bool {
			return c.Params.Size == p.Size && c.Params.QoS == p.QoS && c.Params.Clients == p.Clients && c.Params.Inflight == p.Inflight
		})
		switch x.Scenario {
		case ScenarioPipeline:
			if p.Rate > 0 {
				continue // a fixed rate is not a throughput
			}
			lo := 0.0
			if kr != nil {
				x.ratio("kafka_raw", x.Rate/kr.Rate)
				lo = kr.Rate
			}
			if br != nil {
				x.ratio("broker_raw", x.Rate/br.Rate)
				if lo == 0 || br.Rate < lo {
					lo = br.Rate
				}
			}
			if kr != nil && br != nil {
				x.ratio("min_ceiling", x.Rate/lo)
			}
			if p.Buffer != "memory" {
				mem := find(ScenarioPipeline, func(c *Result) bool {
					q := c.Params
					q.Buffer, q.Fsync = p.Buffer, p.Fsync
					return c.Params.Buffer == "memory" && q == p
				})
				if mem != nil {
					x.ratio("memory", x.Rate/mem.Rate)
				}
			}
		case ScenarioCluster:
			if br != nil {
				x.ratio("broker_raw", x.Rate/br.Rate)
			}
		case ScenarioRecovery:
			if kr != nil {
				if dr, ok := x.Extra["drain_rate"].(float64); ok {
					x.ratio("kafka_raw", dr/kr.Rate)
				}
			}
		}
	}
	r.Targets = r.targets()
}

// targets checks issue 7's targets on the runs they apply to: QoS 1, 100 B.
func (r *Report) targets() []Target {
	var ts []Target
	for _, x := range r.Runs {
		if x.Error != "" || x.Skipped != "" || x.Params.QoS != 1 || x.Params.Size != 100 {
			continue
		}
		p := x.Params
		switch {
		case x.Scenario == ScenarioPipeline && p.Rate == 0:
			if v, ok := x.Ratios["min_ceiling"]; ok && p.Buffer == "memory" {
				ts = append(ts, Target{Name: "memory ≥ 0.8 × min(kafka-raw, broker-raw)", Run: x.Name, Value: v, Limit: 0.8, Unit: "×", Met: v >= 0.8})
			}
			if v, ok := x.Ratios["memory"]; ok && p.Buffer == "disk" && p.Fsync == "batch" {
				ts = append(ts, Target{Name: "disk (fsync=batch) ≥ 0.7 × memory", Run: x.Name, Value: v, Limit: 0.7, Unit: "×", Met: v >= 0.7})
			}
			if v, ok := x.Ratios["memory"]; ok && p.Buffer == "hybrid" {
				ts = append(ts, Target{Name: "hybrid ≥ 0.9 × memory", Run: x.Name, Value: v, Limit: 0.9, Unit: "×", Met: v >= 0.9})
			}
		case x.Scenario == ScenarioPipeline && p.HalfRate:
			if p.Buffer == "disk" && x.Puback != nil {
				ts = append(ts, Target{Name: "disk p99 PUBACK at half the maximum rate ≤ 5 ms", Run: x.Name, Value: x.Puback.P99, Limit: 5, Unit: "ms", Met: x.Puback.P99 <= 5})
			}
			if x.E2E != nil {
				ts = append(ts, Target{Name: "p99 publish→in Kafka ≤ 50 ms (at half the maximum rate)", Run: x.Name, Value: x.E2E.P99, Limit: 50, Unit: "ms", Met: x.E2E.P99 <= 50})
			}
		case x.Scenario == ScenarioRecovery:
			if v, ok := x.Ratios["kafka_raw"]; ok {
				ts = append(ts, Target{Name: "recovery drain ≥ 0.8 × kafka-raw", Run: x.Name, Value: v, Limit: 0.8, Unit: "×", Met: v >= 0.8})
			}
		}
	}
	for _, x := range r.Runs {
		if x.Scenario == ScenarioConnections && x.Skipped == "" {
			n, _ := x.Extra["connected"].(int)
			ts = append(ts, Target{Name: "100,000 idle MQTT connections", Run: x.Name, Value: float64(n), Limit: 100000, Unit: "connections", Met: n >= 100000,
				Detail: fmt.Sprint(x.Extra["limited_by"])})
		}
	}
	return ts
}

// write saves results.json and results.html.
func (r *Report) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.html"), []byte(r.html()), 0o644); err != nil {
		return fmt.Errorf("bench: results: %w", err)
	}
	return nil
}

// printRun prints one line as a run ends, above the progress line.
func (r *Report) printRun(w io.Writer, x *Result) {
	if w == nil {
		return
	}
	switch {
	case x.Skipped != "":
		fmt.Fprintf(w, "\r\033[K%-14s %-34s skipped: %s\n", x.Name, x.Params.String(), x.Skipped)
	case x.Error != "":
		fmt.Fprintf(w, "\r\033[K%-14s %-34s %s msg/s  ERROR: %s\n", x.Name, x.Params.String(), count(int64(x.Rate)), x.Error)
	default:
		fmt.Fprintf(w, "\r\033[K%-14s %-34s %8s msg/s  lost %d  dup %d\n", x.Name, x.Params.String(), count(int64(x.Rate)), x.Lost, x.Duplicates)
	}
}

// Table writes the summary table of every run and the targets.
func (r *Report) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if !slices.ContainsFunc(r.Runs, func(x *Result) bool { return x.Scenario != ScenarioConnections }) {
		tw = tabwriter.NewWriter(io.Discard, 0, 0, 2, ' ', 0)
	}
	fmt.Fprintln(tw, "run\tparams\trate/s\tpub/s\tpuback p50/p99/p999 ms\te2e p50/p99/p999 ms\tlost\tdup\tCPU s\tkfake CPU s\tbench CPU s\tother CPU s\tpeak RSS MB\tallocs/msg\t×kafka-raw\t×broker-raw\t×memory\t")
	for _, x := range r.Runs {
		if x.Scenario == ScenarioCluster && x.Skipped == "" && x.Extra != nil {
			fmt.Fprintf(w, "%s: %v persistent sessions moved off a killed node: all back in %.2fs (per session p50 %.0f ms, p99 %.0f ms from the kill), %v with session present, %v got a publish on their moved subscription\n",
				x.Name, x.Extra["moved_sessions"], asF(x.Extra["moved_all_seconds"]), asF(x.Extra["moved_p50_ms"]), asF(x.Extra["moved_p99_ms"]),
				x.Extra["moved_session_present"], x.Extra["moved_subscriptions_delivered"])
		}
		if x.Scenario == ScenarioConnections {
			continue
		}
		if x.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\tskipped: %s\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", x.Name, x.Params.String(), x.Skipped)
			continue
		}
		errMark := ""
		if x.Error != "" {
			errMark = " (error)"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%.0f\t%.0f\t%s\t%s\t%d\t%d\t%s\t%s\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t\n",
			x.Name, errMark, x.Params.String(), x.Rate, x.PublishRate, lat(x.Puback), lat(x.E2E), x.Lost, x.Duplicates,
			optF(x.CPUSeconds, "%.1f"), optF(x.KafkaCPUSeconds, "%.1f"), x.BenchCPUSeconds, x.OtherCPUSeconds, optMB(x.PeakRSSBytes), optF(x.AllocsPerMsg, "%.1f"),
			ratio(x.Ratios, "kafka_raw"), ratio(x.Ratios, "broker_raw"), ratio(x.Ratios, "memory"))
	}
	tw.Flush()
	for _, x := range r.Runs {
		if x.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", x.Name, x.Error)
		}
		if x.SendLag != nil {
			fmt.Fprintf(w, "%s: fixed rate %.0f/s: PUBACK p50/p99/p999 %s ms from when due, %s ms from the write; the bench's writers lagged their schedule by %s ms\n",
				x.Name, x.Params.Rate, lat(x.Puback), lat(x.PubackFromSend), lat(x.SendLag))
		}
		if x.Scenario == ScenarioRecovery && x.Skipped == "" && x.Extra != nil {
			fmt.Fprintf(w, "%s: backlog %v records (%v MB) buffered at %s/s with Kafka down; drained in %.2fs after restart (%.2fs from 'started') = %s/s\n",
				x.Name, x.Extra["backlog_records"], x.Extra["backlog_mb"], count(int64(asF(x.Extra["ingest_rate"]))),
				asF(x.Extra["drain_seconds_from_exec"]), asF(x.Extra["drain_seconds"]), count(int64(asF(x.Extra["drain_rate"]))))
		}
		if x.Scenario == ScenarioCluster && x.Skipped == "" && x.Extra != nil {
			fmt.Fprintf(w, "%s: %v persistent sessions moved off a killed node: all back in %.2fs (per session p50 %.0f ms, p99 %.0f ms from the kill), %v with session present, %v got a publish on their moved subscription\n",
				x.Name, x.Extra["moved_sessions"], asF(x.Extra["moved_all_seconds"]), asF(x.Extra["moved_p50_ms"]), asF(x.Extra["moved_p99_ms"]),
				x.Extra["moved_session_present"], x.Extra["moved_subscriptions_delivered"])
		}
		if x.Scenario == ScenarioConnections {
			if x.Skipped != "" {
				fmt.Fprintf(w, "%s: skipped: %s\n", x.Name, x.Skipped)
				continue
			}
			fmt.Fprintf(w, "%s: %v of %v idle connections held (limited by: %v); connect rate %.0f/s; mqkafka RSS +%.1f MB = %.1f KB per connection (Go heap %.1f KB), %v goroutines\n",
				x.Name, x.Extra["connected"], x.Extra["target"], x.Extra["limited_by"], asF(x.Extra["connect_rate"]),
				asF(x.Extra["rss_delta_bytes"])/1e6, asF(x.Extra["rss_per_conn_bytes"])/1024, asF(x.Extra["heap_per_conn_bytes"])/1024, x.Extra["goroutines"])
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets:")
		for _, t := range r.Targets {
			mark := "MISSED"
			if t.Met {
				mark = "met"
			}
			fmt.Fprintf(w, "  %-6s %-58s %s: %.3g %s (limit %.3g)\n", mark, t.Name, t.Run, t.Value, t.Unit, t.Limit)
		}
	}
}

func asF(v any) float64 {
	switch v := v.(type) {
	case float64:
		return v
	case int:
		return float64(v)
	case int64:
		return float64(v)
	}
	return 0
}

func lat(l *Latency) string {
	if l == nil {
		return "-"
	}
	return fmt.Sprintf("%s/%s/%s", ms(l.P50), ms(l.P99), ms(l.P999))
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func optF(v *float64, f string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(f, *v)
}

func optMB(v *int64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(*v)/(1<<20))
}

func ratio(m map[string]float64, k string) string {
	v, ok := m[k]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// esc escapes text for HTML and SVG.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
