package bench

import (
	"fmt"
	"math"
	"strings"
)

// scenarioColor sets the ceilings apart from the pipeline in the charts.
func scenarioColor(scenario string) string {
	switch scenario {
	case ScenarioPipeline:
		return "#2b6cb0"
	case ScenarioKafkaRaw:
		return "#718096"
	case ScenarioBrokerRaw:
		return "#a0aec0"
	case ScenarioSource:
		return "#2f855a"
	case ScenarioCluster:
		return "#6b46c1"
	}
	return "#c05621"
}

// bar is one row of a horizontal bar chart.
type bar struct {
	label string
	value float64
	text  string
	color string
}

// barChart renders a self-contained SVG chart: one labelled bar per row.
func barChart(title string, bars []bar) string {
	if len(bars) == 0 {
		return ""
	}
	const (
		labelW = 360
		plotW  = 420
		rowH   = 22
		top    = 28
	)
	hi := 0.0
	for _, b := range bars {
		hi = math.Max(hi, b.value)
	}
	if hi <= 0 {
		hi = 1
	}
	h := top + rowH*len(bars) + 10
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, labelW+plotW+300, h)
	fmt.Fprintf(&s, `<text x="0" y="16" font-weight="bold" font-size="14">%s</text>`, esc(title))
	for i, b := range bars {
		y := top + i*rowH
		w := b.value / hi * plotW
		fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="end">%s</text>`, labelW-6, y+15, esc(b.label))
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`, labelW, y+3, math.Max(w, 1), rowH-6, b.color, esc(b.text))
		fmt.Fprintf(&s, `<text x="%.1f" y="%d">%s</text>`, float64(labelW)+math.Max(w, 1)+4, y+15, esc(b.text))
	}
	s.WriteString(`</svg>`)
	return s.String()
}

// html renders results.html: the table, the targets and the charts, with
// no script and nothing fetched from elsewhere.
func (r *Report) html() string {
	var s strings.Builder
	s.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>mqkafka bench</title><style>
body{font-family:sans-serif;margin:24px;color:#1a202c}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #cbd5e0;padding:3px 7px;text-align:right}
td:first-child,td:nth-child(2),th{text-align:left}
.met{color:#276749}.missed{color:#c53030;font-weight:bold}
</style></head><body>`)
	fmt.Fprintf(&s, "<h1>mqkafka bench</h1><p>%s · %d CPUs · %s · Kafka: %s · broker: %s</p>",
		r.Started.Format("2006-01-02 15:04:05"), r.Host.CPUs, esc(r.Host.GoVersion), esc(r.Host.Kafka), esc(r.Host.Broker))
	if len(r.Command) > 0 {
		fmt.Fprintf(&s, "<p><code>%s</code></p>", esc(strings.Join(r.Command, " ")))
	}

	s.WriteString("<h2>Runs</h2><table><tr><th>run</th><th>params</th><th>rate/s</th><th>publish/s</th><th>PUBACK p50/p99/p999 ms</th><th>e2e p50/p99/p999 ms</th><th>lost</th><th>dup</th><th>CPU s</th><th>kfake CPU s</th><th>bench CPU s</th><th>other CPU s</th><th>peak RSS MB</th><th>allocs/msg</th><th>×kafka-raw</th><th>×broker-raw</th><th>×memory</th></tr>")
	for _, x := range r.Runs {
		if x.Scenario == ScenarioConnections {
			continue
		}
		if x.Skipped != "" || x.Error != "" {
			msg := x.Skipped
			if msg == "" {
				msg = "error: " + x.Error
			}
			fmt.Fprintf(&s, "<tr><td>%s</td><td>%s</td><td colspan=15 style='text-align:left'>%s</td></tr>", esc(x.Name), esc(x.Params.String()), esc(msg))
			continue
		}
		fmt.Fprintf(&s, "<tr><td>%s</td><td>%s</td><td>%.0f</td><td>%.0f</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%.1f</td><td>%.1f</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>",
			esc(x.Name), esc(x.Params.String()), x.Rate, x.PublishRate, lat(x.Puback), lat(x.E2E), x.Lost, x.Duplicates,
			optF(x.CPUSeconds, "%.1f"), optF(x.KafkaCPUSeconds, "%.1f"), x.BenchCPUSeconds, x.OtherCPUSeconds, optMB(x.PeakRSSBytes), optF(x.AllocsPerMsg, "%.1f"),
			ratio(x.Ratios, "kafka_raw"), ratio(x.Ratios, "broker_raw"), ratio(x.Ratios, "memory"))
	}
	s.WriteString("</table>")

	if len(r.Targets) > 0 {
		s.WriteString("<h2>Targets</h2><table><tr><th>target</th><th>run</th><th>value</th><th>limit</th><th></th></tr>")
		for _, t := range r.Targets {
			cls, mark := "missed", "missed"
			if t.Met {
				cls, mark = "met", "met"
			}
			fmt.Fprintf(&s, "<tr><td>%s</td><td>%s</td><td>%.3g %s</td><td>%.3g</td><td class=%s>%s</td></tr>", esc(t.Name), esc(t.Run), t.Value, esc(t.Unit), t.Limit, cls, mark)
		}
		s.WriteString("</table>")
	}

	var rates, pubacks, e2es, cpus []bar
	for _, x := range r.Runs {
		if x.Skipped != "" || x.Error != "" || x.Scenario == ScenarioConnections {
			continue
		}
		label := x.Scenario + " " + x.Params.String()
		color := scenarioColor(x.Scenario)
		rate := x.Rate
		if x.Scenario == ScenarioRecovery {
			rate = asF(x.Extra["drain_rate"])
		}
		rates = append(rates, bar{label, rate, fmt.Sprintf("%s msg/s", count(int64(rate))), color})
		if x.Puback != nil {
			pubacks = append(pubacks, bar{label, x.Puback.P99, fmt.Sprintf("p99 %s ms (p50 %s, p999 %s)", ms(x.Puback.P99), ms(x.Puback.P50), ms(x.Puback.P999)), color})
		}
		if x.E2E != nil {
			e2es = append(e2es, bar{label, x.E2E.P99, fmt.Sprintf("p99 %s ms (p50 %s, p999 %s)", ms(x.E2E.P99), ms(x.E2E.P50), ms(x.E2E.P999)), color})
		}
		if x.CPUSeconds != nil && x.Delivered > 0 {
			us := *x.CPUSeconds / float64(x.Delivered) * 1e6
			cpus = append(cpus, bar{label, us, fmt.Sprintf("%.1f µs/msg", us), color})
		}
	}
	s.WriteString("<h2>Charts</h2>")
	s.WriteString(barChart("End-to-end rate (messages/s; recovery: drain rate)", rates))
	s.WriteString("<br>")
	s.WriteString(barChart("PUBACK latency p99 (ms)", pubacks))
	s.WriteString("<br>")
	s.WriteString(barChart("Publish → far end latency p99 (ms)", e2es))
	s.WriteString("<br>")
	s.WriteString(barChart("CPU of the process under test per message (µs)", cpus))

	for _, x := range r.Runs {
		if x.Scenario != ScenarioConnections {
			continue
		}
		s.WriteString("<h2>Connections</h2>")
		if x.Skipped != "" {
			fmt.Fprintf(&s, "<p>skipped: %s</p>", esc(x.Skipped))
			continue
		}
		s.WriteString("<table>")
		for _, k := range []string{"target", "connected", "limited_by", "connect_rate", "rss_before_bytes", "rss_after_bytes", "rss_per_conn_bytes", "heap_per_conn_bytes", "goroutines", "file_limit"} {
			fmt.Fprintf(&s, "<tr><td>%s</td><td>%v</td></tr>", esc(k), esc(fmt.Sprint(x.Extra[k])))
		}
		s.WriteString("</table>")
	}
	s.WriteString("</body></html>\n")
	return s.String()
}
