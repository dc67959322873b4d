package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the bench started: mqkafka under test or the kfake
// broker. Its output goes to a log file in the output directory.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *lineWatcher
	done chan struct{}
	err  error // valid after done
}

// startChild starts bin with args and waits until a line of its output
// contains ready (or it exits, or timeout passes). It returns that line.
func startChild(ctx context.Context, name, bin string, args, env []string, logPath, ready string, timeout time.Duration) (*child, string, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", fmt.Errorf("%s: log: %w", name, err)
	}
	c := &child{name: name, done: make(chan struct{})}
	c.out = &lineWatcher{w: f, want: ready, found: make(chan string, 1)}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	// The children must not outlive an interrupted bench.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		f.Close()
		close(c.done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line := <-c.out.found:
		return c, line, nil
	case <-c.done:
		return nil, "", fmt.Errorf("%s exited at start (%v); see %s:\n%s", name, c.err, logPath, tail(logPath))
	case <-timer.C:
		c.kill()
		return nil, "", fmt.Errorf("%s did not start within %v; see %s:\n%s", name, timeout, logPath, tail(logPath))
	case <-ctx.Done():
		c.kill()
		return nil, "", ctx.Err()
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// kill ends the child at once (SIGKILL) and waits for it.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// stop asks the child to stop (SIGTERM) and kills it after timeout.
func (c *child) stop(timeout time.Duration) error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		var ee *exec.ExitError
		if c.err != nil && !errors.As(c.err, &ee) {
			return fmt.Errorf("%s: %w", c.name, c.err)
		}
		if code := c.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("%s exited with code %d", c.name, code)
		}
		return nil
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("%s did not stop within %v; killed", c.name, timeout)
	}
}

// lineWatcher copies a child's output to w and reports the first line
// containing want.
type lineWatcher struct {
	w     io.Writer
	want  string
	found chan string

	mu      sync.Mutex
	partial []byte
	hit     bool
}

func (l *lineWatcher) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.hit {
		l.partial = append(l.partial, b...)
		for {
			i := bytes.IndexByte(l.partial, '\n')
			if i < 0 {
				break
			}
			line := string(l.partial[:i])
			l.partial = l.partial[i+1:]
			if strings.Contains(line, l.want) {
				l.hit = true
				l.partial = nil
				l.found <- line
				break
			}
		}
	}
	return l.w.Write(b)
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 12 {
		lines = lines[len(lines)-12:]
	}
	return strings.Join(lines, "\n")
}

// procStats is what /proc tells of a process.
type procStats struct {
	cpu     time.Duration // user + system, all threads, dead ones included
	hwm     int64         // peak resident set (VmHWM), bytes
	rss     int64         // current resident set (VmRSS), bytes
	threads int
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times; it is 100 on
// every Linux architecture Go supports.
const clockTick = 100

func readProcStats(pid int) (procStats, error) {
	var s procStats
	cpu, err := readStatCPU(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return s, err
	}
	s.cpu = cpu
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return s, fmt.Errorf("proc status: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmHWM":
			s.hwm = n << 10
		case "VmRSS":
			s.rss = n << 10
		case "Threads":
			s.threads = int(n)
		}
	}
	return s, sc.Err()
}

// readStatCPU reads utime + stime from a stat file (of a process or a thread).
func readStatCPU(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("proc stat: %w", err)
	}
	_, rest, ok := bytes.Cut(b, []byte(") "))
	if !ok {
		return 0, fmt.Errorf("proc stat %s: malformed", path)
	}
	// rest starts at field 3 (state); utime and stime are fields 14 and 15.
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat %s: malformed", path)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// threadsCPU sums the CPU time of this process's threads whose name starts
// with prefix: librdkafka names its threads "rdk:…", which separates its
// work from the Go runtime's in the bench's own process.
func threadsCPU(prefix string) time.Duration {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, t := range tasks {
		comm, err := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "comm"))
		if err != nil || !strings.HasPrefix(string(comm), prefix) {
			continue
		}
		if d, err := readStatCPU(filepath.Join("/proc/self/task", t.Name(), "stat")); err == nil {
			total += d
		}
	}
	return total
}

// machineCPU is the CPU time the whole machine has spent busy, all
// processes together (the first line of /proc/stat).
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	// user nice system idle iowait irq softirq steal: all but idle and iowait.
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTick
}

// selfCPU is the bench process's own CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// raiseFileLimit lifts the limit on open files to want, or as far as the
// hard limit allows where raising that is not permitted; the children
// inherit it. It returns the limit in force.
func raiseFileLimit(want uint64) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if want > lim.Max {
		up := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return want
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return lim.Cur
}
