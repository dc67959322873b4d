package main

import (
	"context"
	"errors"
	"expvar"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"time"
)

// startPprof serves net/http/pprof and expvar (/debug/vars, the runtime's
// MemStats) on the address in MQKAFKA_PPROF, for `mqkafka bench` and for
// anyone profiling a live process; MQKAFKA_PPROF_MUTEX sets the mutex
// profile fraction. Without MQKAFKA_PPROF it does nothing. The returned
// function stops the server.
func startPprof(log *slog.Logger) (stop func()) {
	addr := os.Getenv("MQKAFKA_PPROF")
	if addr == "" {
		return func() {}
	}
	if f, err := strconv.Atoi(os.Getenv("MQKAFKA_PPROF_MUTEX")); err == nil && f > 0 {
		runtime.SetMutexProfileFraction(f)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("pprof endpoint not started", "addr", addr, "err", err)
		return func() {}
	}
	// An own mux: what is served here must not depend on who else
	// registered handlers on http.DefaultServeMux.
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/vars", expvar.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof endpoint", "err", err)
		}
	}()
	log.Info("pprof endpoint", "addr", l.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
}
