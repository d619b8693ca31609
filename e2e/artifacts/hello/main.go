// hello is the sample workload of the e2e tests: an HTTP server on :8080 (or $PORT, or -addr) that answers
// every GET with 200 and a line naming the pod (or host) that served it, so tests can tell replicas apart:
//
//	hello from POD_NAME (host HOSTNAME)
//
// POD_NAME comes from the environment (set it with the downward API); it falls back to the hostname, which
// is the pod name in Kubernetes anyway. GET /healthz answers "ok". Built static (CGO_ENABLED=0).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "", "listen address (default :$PORT or :8080)")
	flag.Parse()
	if *addr == "" {
		*addr = ":8080"
		if p := os.Getenv("PORT"); p != "" {
			*addr = ":" + p
		}
	}
	host, _ := os.Hostname()
	name := os.Getenv("POD_NAME")
	if name == "" {
		name = host
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Pod-Name", name)
		fmt.Fprintf(w, "hello from %s (host %s)\n", name, host)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("hello: %s listening on %s", name, *addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
