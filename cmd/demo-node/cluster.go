package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Timings of the -cluster supervisor.
const (
	// childReadyTimeout bounds how long a child may take to print its
	// ready line.
	childReadyTimeout = 60 * time.Second
	// childStopTimeout is how long a child has to stop after SIGTERM
	// before it is killed.
	childStopTimeout = 5 * time.Second
)

// supervisor is what runCluster needs from its environment.
type supervisor struct {
	exe    string   // the program to run as each node: this one
	env    []string // the children's environment; nil: this process's
	stdout io.Writer
	stderr io.Writer
	// started, if not nil, is told each child's process id (for tests).
	started func(name string, pid int)
}

// readyInfo is a node's ready line, parsed.
type readyInfo struct {
	Name, HTTP, Gossip, RPC string
}

// parseReadyLine parses
//
//	meshcache node NAME ready http=HOST:PORT gossip=HOST:PORT rpc=HOST:PORT
//
// (gossip and rpc are empty for a standalone node).
func parseReadyLine(line string) (readyInfo, error) {
	f := strings.Fields(line)
	if len(f) != 7 || f[0] != "meshcache" || f[1] != "node" || f[3] != "ready" {
		return readyInfo{}, fmt.Errorf("not a ready line: %q", line)
	}
	r := readyInfo{Name: f[2]}
	for i, dst := range []*string{&r.HTTP, &r.Gossip, &r.RPC} {
		key := []string{"http=", "gossip=", "rpc="}[i]
		v, ok := strings.CutPrefix(f[4+i], key)
		if !ok {
			return readyInfo{}, fmt.Errorf("ready line %q: field %d does not start with %s", line, 5+i, key)
		}
		*dst = v
	}
	if r.HTTP == "" {
		return readyInfo{}, fmt.Errorf("ready line %q: no HTTP address", line)
	}
	return r, nil
}

// child is one node process of the cluster.
type child struct {
	name  string
	cmd   *exec.Cmd
	ready readyInfo
	lines chan string   // its first line on stdout
	done  chan struct{} // closed once the process has exited
	err   error         // Wait's answer, set before done is closed
}

// runCluster runs o.cluster nodes as child processes of sup.exe on
// 127.0.0.1 until ctx ends, sharing an origin directory (a new, seeded,
// temporary one unless -origin names one). It prints the origin, each
// node's status page URL and a hint, reports children that die, and stops
// them all (SIGTERM, then SIGKILL) when ctx ends.
func runCluster(ctx context.Context, o options, sup supervisor) (err error) {
	sup.stderr = &lockedWriter{w: sup.stderr}
	log := newLogger(sup.stderr, o.logLevel)
	dir := o.origin
	if dir == "" {
		if dir, err = os.MkdirTemp("", "meshcache-cluster-"); err != nil {
			return fmt.Errorf("create the origin directory: %w", err)
		}
		defer os.RemoveAll(dir)
		if err := seedOrigin(dir); err != nil {
			return err
		}
	} else if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return &usageError{err: fmt.Errorf("-origin %s: not a directory", dir)}
	}
	fmt.Fprintf(sup.stdout, "origin %s\n", dir)

	exited := make(chan *child, o.cluster)
	var children []*child
	var wg sync.WaitGroup
	defer func() {
		stopChildren(children, log)
		wg.Wait()
	}()
	for i := range o.cluster {
		name := fmt.Sprintf("n%d", i+1)
		var seed string
		if i > 0 {
			seed = children[0].ready.Gossip
		}
		c, err := sup.start(ctx, name, childArgs(o, name, dir, seed), &wg, exited)
		if err != nil {
			return err
		}
		children = append(children, c)
		if err := c.waitReady(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	for _, c := range children {
		fmt.Fprintf(sup.stdout, "node %s http://%s/\n", c.name, c.ready.HTTP)
	}
	fmt.Fprintf(sup.stdout, "try: curl -i http://%s/v1/users/user:1 (twice; X-Cache says where the value came from), open a URL above for the status page, Ctrl-C stops the cluster\n",
		children[len(children)-1].ready.HTTP)

	alive := len(children)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping the cluster")
			return nil
		case c := <-exited:
			alive--
			fmt.Fprintf(sup.stderr, "demo-node: node %s exited unexpectedly (%v); %d of %d nodes left\n", c.name, c.exitStatus(), alive, len(children))
			if alive == 0 {
				return errors.New("every node exited")
			}
		}
	}
}

// childArgs returns the flags of node name: the cluster's shared settings,
// port 0 everywhere, and the seed to join unless it is the first.
func childArgs(o options, name, dir, seed string) []string {
	profile := "local"
	if o.set["gossip-profile"] {
		profile = o.gossipProfile.String()
	}
	args := []string{
		"-name", name,
		"-http", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-rpc", "127.0.0.1:0",
		"-origin", dir,
		"-gossip-profile", profile,
		"-load-delay", o.loadDelay.String(),
		"-ttl", o.ttl.String(),
		"-hot-ttl", o.hotTTL.String(),
		"-write-timeout", o.writeTimeout.String(),
		"-log-level", strings.ToLower(o.logLevel.String()),
	}
	if o.minority {
		args = append(args, "-minority-serves")
	}
	if o.fetchTimeout > 0 {
		args = append(args, "-fetch-timeout", o.fetchTimeout.String())
	}
	if o.staleIfError > 0 {
		args = append(args, "-stale-if-error", o.staleIfError.String())
	}
	if o.staleRevalid > 0 {
		args = append(args, "-stale-while-revalidate", o.staleRevalid.String())
	}
	if o.redis != "" {
		args = append(args, "-redis", o.redis, "-redis-prefix", o.redisPrefix)
	}
	if o.secretKeyFile != "" {
		args = append(args, "-secret-key-file", o.secretKeyFile)
	}
	if o.tlsCert != "" {
		args = append(args, "-tls-cert", o.tlsCert, "-tls-key", o.tlsKey, "-tls-ca", o.tlsCA)
		if o.tlsServerName != "" {
			args = append(args, "-tls-server-name", o.tlsServerName)
		}
	}
	if seed != "" {
		args = append(args, "-join", seed)
	}
	return args
}

// start starts node name. A goroutine, counted in wg, waits for it and
// then sends it on exited, unless it was stopped on purpose.
func (sup supervisor) start(ctx context.Context, name string, args []string, wg *sync.WaitGroup, exited chan<- *child) (*child, error) {
	c := &child{name: name, lines: make(chan string, 1), done: make(chan struct{})}
	c.cmd = exec.Command(sup.exe, args...)
	c.cmd.Env = sup.env
	c.cmd.Stdout = &firstLine{ch: c.lines}
	c.cmd.Stderr = &prefixWriter{w: sup.stderr, prefix: name + " | "}
	c.cmd.SysProcAttr = childProcAttr()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	if sup.started != nil {
		sup.started(name, c.cmd.Process.Pid)
	}
	wg.Go(func() {
		c.err = c.cmd.Wait()
		close(c.done)
		if ctx.Err() == nil {
			exited <- c
		}
	})
	return c, nil
}

// waitReady waits for c's ready line.
func (c *child) waitReady(ctx context.Context) error {
	t := time.NewTimer(childReadyTimeout)
	defer t.Stop()
	select {
	case line := <-c.lines:
		r, err := parseReadyLine(line)
		if err != nil {
			return fmt.Errorf("node %s: %w", c.name, err)
		}
		c.ready = r
		return nil
	case <-c.done:
		return fmt.Errorf("node %s exited before it was ready (%v)", c.name, c.exitStatus())
	case <-t.C:
		return fmt.Errorf("node %s not ready after %v", c.name, childReadyTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exitStatus describes how c exited; call it after c.done is closed.
func (c *child) exitStatus() string {
	if c.err == nil {
		return "exit status 0"
	}
	return c.err.Error()
}

// stopChildren sends SIGTERM to every child, waits for them up to
// childStopTimeout, and kills those still running.
func stopChildren(children []*child, log *slog.Logger) {
	for _, c := range children {
		select {
		case <-c.done:
			continue
		default:
		}
		if err := terminate(c.cmd.Process); err != nil {
			_ = c.cmd.Process.Kill()
		}
	}
	deadline := time.NewTimer(childStopTimeout)
	defer deadline.Stop()
	for _, c := range children {
		select {
		case <-c.done:
		case <-deadline.C:
			deadline.Reset(0) // the others get no more time
			log.Warn("node did not stop in time; killing it", "node", c.name, "timeout", childStopTimeout)
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

// firstLine is a child's stdout: it sends the first line on ch and
// discards the rest.
type firstLine struct {
	ch   chan<- string
	buf  []byte
	sent bool
}

func (w *firstLine) Write(p []byte) (int, error) {
	if w.sent {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
		w.ch <- strings.TrimRight(string(w.buf[:i]), "\r")
		w.sent, w.buf = true, nil
	} else if len(w.buf) > 4096 {
		w.ch <- string(w.buf) // not a ready line: waitReady says so
		w.sent, w.buf = true, nil
	}
	return len(p), nil
}

// prefixWriter writes each line to w with a prefix, whole lines at a time,
// so that the logs of several children do not interleave within a line.
type prefixWriter struct {
	mu     sync.Mutex // guards buf
	w      io.Writer  // shared by the children: a *lockedWriter
	prefix string
	buf    []byte
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	var out []byte
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		out = append(out, p.prefix...)
		out = append(out, p.buf[:i+1]...)
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) > 64<<10 { // a very long line: write what there is
		out = append(append(append(out, p.prefix...), p.buf...), '\n')
		p.buf = nil
	}
	if len(out) > 0 {
		if _, err := p.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
