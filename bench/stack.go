package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// kafkaSide is the Kafka of one run: a kfake child, or the external
// cluster of --kafka.
type kafkaSide struct {
	addr string
	ch   *child // nil for an external cluster
	port int
}

// startKafka starts a kfake child on port (0: any free one).
// startKafkaTopic starts Kafka (or takes --kafka) and creates the run's topic.
func (r *runner) startKafkaTopic(ctx context.Context, name string, tag uint32, partitions int) (*kafkaSide, string, error) {
	k, err := r.startKafka(ctx, name, 0)
	if err != nil {
		return nil, "", err
	}
	topic := fmt.Sprintf("bench-%s-%08x", name, tag)
	if err := createTopic(ctx, k.addr, topic, partitions); err != nil {
		k.close()
		return nil, "", err
	}
	return k, topic, nil
}

func (r *runner) startKafka(ctx context.Context, name string, port int) (*kafkaSide, error) {
	if r.o.Kafka != "" {
		return &kafkaSide{addr: r.o.Kafka}, nil
	}
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	ch, line, err := startChild(ctx, "kfake", r.o.Binary,
		[]string{"bench", "kfake", "--listen", listen, "--partitions", strconv.Itoa(max(r.o.Params.Partitions, 1))},
		nil, filepath.Join(r.o.Out, "logs", name+".kfake.log"), kfakeReady, 30*time.Second)
	if err != nil {
		return nil, err
	}
	_, addr, _ := strings.Cut(line, kfakeReady)
	return &kafkaSide{addr: strings.TrimSpace(addr), ch: ch, port: port}, nil
}

func (k *kafkaSide) close() {
	if k != nil && k.ch != nil {
		k.ch.kill()
	}
}

// stats reads the kfake child's /proc figures; false for an external cluster.
func (k *kafkaSide) stats() (procStats, bool) {
	if k == nil || k.ch == nil {
		return procStats{}, false
	}
	s, err := readProcStats(k.ch.pid())
	return s, err == nil
}

// mqSide is the mqkafka of one run.
type mqSide struct {
	addr    string
	ch      *child // nil for an external broker (--broker)
	pprof   string // host:port of its pprof endpoint
	cfgPath string
}

// startMQKafka writes cfg and starts `mqkafka serve` on it.
func (r *runner) startMQKafka(ctx context.Context, name string, cfg mqConfig) (*mqSide, error) {
	if r.o.Broker != "" && cfg.source == nil {
		return &mqSide{addr: r.o.Broker}, nil
	}
	var err error
	if cfg.port == 0 {
		if cfg.port, err = freePort(); err != nil {
			return nil, err
		}
	}
	pp, err := freePort()
	if err != nil {
		return nil, err
	}
	if cfg.dataDir == "" {
		cfg.dataDir = filepath.Join(r.o.Out, "data", name)
	}
	if err := os.MkdirAll(cfg.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	path := filepath.Join(r.o.Out, "logs", name+".toml")
	if err := os.WriteFile(path, []byte(cfg.toml()), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	m := &mqSide{cfgPath: path, pprof: "127.0.0.1:" + strconv.Itoa(pp)}
	env := []string{"MQKAFKA_PPROF=" + m.pprof}
	if r.o.Profile {
		env = append(env, "MQKAFKA_PPROF_MUTEX=100")
	}
	m.ch, _, err = startChild(ctx, "mqkafka", r.o.Binary, []string{"serve", "-c", path}, env,
		filepath.Join(r.o.Out, "logs", name+".mqkafka.log"), "mqkafka started", 60*time.Second)
	if err != nil {
		return nil, err
	}
	m.addr = "127.0.0.1:" + strconv.Itoa(cfg.port)
	return m, nil
}

// restart stops mqkafka gracefully and starts it again on the same config.
func (r *runner) restartMQKafka(ctx context.Context, m *mqSide, name string) error {
	if err := m.ch.stop(30 * time.Second); err != nil {
		r.log.Warn("stopping mqkafka", "err", err)
	}
	env := []string{"MQKAFKA_PPROF=" + m.pprof}
	ch, _, err := startChild(ctx, "mqkafka", r.o.Binary, []string{"serve", "-c", m.cfgPath}, env,
		filepath.Join(r.o.Out, "logs", name+".mqkafka.log"), "mqkafka started", 60*time.Second)
	if err != nil {
		return err
	}
	m.ch = ch
	return nil
}

func (m *mqSide) stats() (procStats, bool) {
	if m == nil || m.ch == nil {
		return procStats{}, false
	}
	s, err := readProcStats(m.ch.pid())
	return s, err == nil
}

// stop ends mqkafka gracefully: a run's buffers are empty by then, so
// it is quick, and a failure to stop is worth a log line.
func (r *runner) stopMQKafka(m *mqSide) {
	if m == nil || m.ch == nil {
		return
	}
	if err := m.ch.stop(30 * time.Second); err != nil {
		r.log.Warn("stopping mqkafka", "err", err)
	}
}

// memStats is the part of the child's runtime.MemStats the bench reads
// through expvar (/debug/vars).
type memStats struct {
	Mallocs    uint64
	TotalAlloc uint64
	NumGC      uint32
	HeapInuse  uint64
	Sys        uint64
}

func (m *mqSide) memStats(ctx context.Context) (memStats, bool) {
	if m == nil || m.ch == nil {
		return memStats{}, false
	}
	var v struct{ Memstats memStats }
	if err := getJSON(ctx, "http://"+m.pprof+"/debug/vars", &v); err != nil {
		return memStats{}, false
	}
	return v.Memstats, true
}

func getJSON(ctx context.Context, url string, v any) error {
	body, err := httpGet(ctx, url)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// profile fetches CPU, allocation and mutex profiles of mqkafka over the
// next seconds into dir; it runs while the load does.
func (m *mqSide) profile(ctx context.Context, dir, name string, seconds int) []string {
	if m == nil || m.ch == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil
	}
	kinds := []struct{ path, ext string }{
		{"profile", "cpu"}, {"allocs", "allocs"}, {"mutex", "mutex"},
	}
	type out struct {
		file string
		err  error
	}
	results := make(chan out, len(kinds))
	for _, k := range kinds {
		go func() {
			body, err := httpGet(ctx, fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", m.pprof, k.path, seconds))
			if err != nil {
				results <- out{err: err}
				return
			}
			file := filepath.Join(dir, name+"."+k.ext+".pprof")
			results <- out{file: file, err: os.WriteFile(file, body, 0o644)}
		}()
	}
	var files []string
	for range kinds {
		if o := <-results; o.err == nil {
			files = append(files, o.file)
		}
	}
	return files
}
