// Command demo-node runs a meshcache node behind an HTTP API, or a local
// cluster of them with -cluster N.
//
// A node's loader reads the value of key K in group G from the file
// DIR/G/K of its origin directory (-origin), sleeping -load-delay first
// like a slow database. The HTTP API reads, writes and invalidates keys
// (GET, PUT, DELETE /v1/{group}/{key}, POST /v1/{group}/-/invalidate-tags
// and /v1/{group}/-/clear), reports the node's counters (/v1/stats,
// /metrics), its members (/v1/members) and its ring (/v1/ring), and serves
// a status page at /.
//
// Once ready, a node prints one line to stdout:
//
//	meshcache node NAME ready http=HOST:PORT gossip=HOST:PORT rpc=HOST:PORT
//
// With -cluster N it starts N such nodes as child processes on 127.0.0.1,
// sharing a temporary origin directory seeded with a few files, and prints
// their status page URLs. SIGINT or SIGTERM stops the node (or the
// cluster) gracefully. Bad flags exit with status 2, other failures with 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// run runs the command with args (without the program name) until ctx
// ends, printing its ready lines to stdout and its logs to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.cluster > 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find this program's executable: %w", err)
		}
		return runCluster(ctx, o, supervisor{exe: exe, stdout: stdout, stderr: stderr})
	}
	return runNode(ctx, o, stdout, stderr)
}

// exitCode reports err on stderr, unless the flag package already did, and
// returns the process's exit status: 0 for nil (and -h), 2 for bad flags,
// 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.help {
			return 0
		}
		if !ue.reported {
			fmt.Fprintf(stderr, "demo-node: %v\nRun 'demo-node -h' for the flags.\n", ue.err)
		}
		return 2
	}
	fmt.Fprintf(stderr, "demo-node: %v\n", err)
	return 1
}
