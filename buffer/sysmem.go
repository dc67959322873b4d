package buffer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// MemoryMonitor samples system memory use so that memory queues can shed
// their oldest records while the machine is short of memory (EMQX's
// memory_overload_protection). Reading /proc/meminfo per append would cost
// a syscall per record; a sample a second is enough to react.
type MemoryMonitor struct {
	path       string
	high       float64 // percent
	every      time.Duration
	log        *slog.Logger
	overloaded atomic.Bool
	usedPct    atomic.Uint64 // hundredths of a percent
}

// NewMemoryMonitor watches /proc/meminfo against a high watermark in percent.
func NewMemoryMonitor(highPercent float64, every time.Duration, log *slog.Logger) *MemoryMonitor {
	return &MemoryMonitor{path: "/proc/meminfo", high: highPercent, every: every, log: log}
}

// Overloaded reports whether memory use was above the watermark at the last sample.
func (m *MemoryMonitor) Overloaded() bool { return m.overloaded.Load() }

// UsedPercent is the memory use of the last sample.
func (m *MemoryMonitor) UsedPercent() float64 { return float64(m.usedPct.Load()) / 100 }

// Run samples until ctx ends. Where /proc/meminfo cannot be read (not
// Linux), it logs once and never reports overload.
func (m *MemoryMonitor) Run(ctx context.Context) {
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		used, err := readMemUsed(m.path)
		if err != nil {
			m.log.Warn("memory_overload_protection is off: cannot read system memory", "err", err)
			return
		}
		m.usedPct.Store(uint64(used * 100))
		over := used >= m.high
		if was := m.overloaded.Swap(over); was != over {
			m.log.Warn("system memory watermark", "overloaded", over, "used_percent", used, "high_watermark", m.high)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readMemUsed returns the percentage of memory in use: 1 - MemAvailable/MemTotal.
func readMemUsed(path string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var total, avail int64 = -1, -1
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseInt(string(fields[1]), 10, 64)
		if err != nil {
			continue
		}
		switch string(fields[0]) {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		}
	}
	if total <= 0 || avail < 0 {
		return 0, fmt.Errorf("%s: no MemTotal/MemAvailable", path)
	}
	return 100 * (1 - float64(avail)/float64(total)), nil
}
