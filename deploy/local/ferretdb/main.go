// Command orderstream-ferretdb runs FerretDB (MongoDB wire protocol) on its
// SQLite backend for local development and tests without Docker.
//
// It embeds FerretDB through its public `ferretdb` package instead of
// `go install`-ing FerretDB's own command, which panics on a missing version
// file when built outside FerretDB's repository.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	_ "net/http/pprof" // served only with -debug-addr
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("data-dir", "", "directory for the SQLite databases (required)")
	debug := flag.String("debug-addr", "", "serve Go's profiles (/debug/pprof/) on this address; off when empty")
	flag.Parse()

	if *debug != "" {
		go func() { log.Println(http.ListenAndServe(*debug, nil)) }()
	}

	if *dir == "" {
		log.Fatal("-data-dir is required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		log.Fatalf("data dir: %v", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		log.Fatalf("data dir: %v", err)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *addr},
		Handler:   "sqlite",
		// WAL (FerretDB's default) with synchronous=NORMAL: a commit no longer waits for an
		// fsync (about a tenth of the server's CPU under the order path's writes); the database
		// stays consistent after a crash of the process or machine, and a machine crash can lose
		// the last commits. This server is for development and tests; production runs MongoDB.
		SQLiteURL: "file:" + abs + "/?_pragma=synchronous(normal)",
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Printf("orderstream-ferretdb listening on %s (sqlite %s)\n", *addr, abs)
	if err := f.Run(ctx); err != nil {
		log.Fatalf("ferretdb: %v", err)
	}
}
