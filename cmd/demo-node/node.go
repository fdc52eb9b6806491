package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/meshcache/meshcache"
	"github.com/meshcache/meshcache/l2/redisl2"
)

// shutdownTimeout bounds how long a stopping node waits for the HTTP
// requests in flight.
const shutdownTimeout = 5 * time.Second

// newLogger returns the text logger on stderr.
func newLogger(stderr io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// runNode runs one node until ctx ends: it starts the node, serves the
// HTTP API, prints the ready line once the node is ready, and on ctx's end
// stops the HTTP server and then the node (which leaves the cluster).
func runNode(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	log := newLogger(stderr, o.logLevel)
	dir := o.origin
	if dir == "" {
		if dir, err = os.MkdirTemp("", "meshcache-origin-"); err != nil {
			return fmt.Errorf("create the origin directory: %w", err)
		}
		defer os.RemoveAll(dir)
		log.Info("origin directory (removed on exit): put the value of key K in group G in the file DIR/G/K", "dir", dir)
	} else if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return &usageError{err: fmt.Errorf("-origin %s: not a directory", dir)}
	}

	var l2Store *redisl2.Store
	if o.redis != "" {
		// ContextTimeoutEnabled: the library's timeouts bound each call,
		// so that a slow Redis never holds a Get. Closed after the node.
		rc := redis.NewClient(&redis.Options{Addr: o.redis, ContextTimeoutEnabled: true, MaxRetries: -1})
		defer rc.Close()
		l2Store = redisl2.New(rc, o.redisPrefix)
		log.Info("second level on Redis", "addr", o.redis, "prefix", o.redisPrefix)
	}

	// Groups are created on first use: also when a peer asks this node,
	// as a key's owner, for a group it has not used yet.
	var api atomic.Pointer[server]
	onUnknownGroup := func(_ *meshcache.Node, name string) (*meshcache.Group, error) {
		s := api.Load()
		if s == nil {
			return nil, errors.New("not serving yet")
		}
		return s.group(name)
	}
	node, err := meshcache.NewNode(meshcache.Config{
		NodeName:       o.name,
		Logger:         log,
		BindAddr:       o.gossipAddr,
		RPCAddr:        o.rpcAddr,
		Join:           o.join,
		SecretKey:      o.secretKey,
		TLS:            o.tls,
		GossipProfile:  o.gossipProfile,
		WriteTimeout:   o.writeTimeout,
		MinorityServes: o.minority,
		FetchTimeout:   o.fetchTimeout,

		OnUnknownGroup: onUnknownGroup,
	})
	if err != nil {
		return fmt.Errorf("start the node: %w", err)
	}
	defer func() {
		if cerr := node.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("stop the node: %w", cerr)
		}
	}()
	org := &origin{
		dir: dir, delay: o.loadDelay, ttl: o.ttl, maxBytes: meshcache.DefaultMaxValueBytes,
		staleIfError: o.staleIfError, staleWhileRevalidate: o.staleRevalid,
	}
	if l2Store != nil {
		org.l2 = l2Store // not a nil *Store in the interface
	}
	s, err := newServer(node, org, o.hotTTL, log)
	if err != nil {
		return err
	}
	api.Store(s)
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("HTTP listener: %w", err)
	}
	srv := newHTTPServer(s, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			log.Warn("HTTP shutdown", "err", serr)
			srv.Close()
		}
		if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = fmt.Errorf("HTTP server: %w", serr)
		}
	}()

	select {
	case <-node.Ready():
	case <-ctx.Done():
		log.Info("stopping before the node was ready")
		return nil
	case err := <-served:
		served <- err // for the deferred shutdown
		return fmt.Errorf("HTTP server: %w", err)
	}
	fmt.Fprintf(stdout, "meshcache node %s ready http=%s gossip=%s rpc=%s\n",
		node.Name(), ln.Addr(), node.GossipAddr(), node.RPCAddr())
	select {
	case <-ctx.Done():
		log.Info("stopping", "node", node.Name())
		return nil
	case err := <-served:
		served <- err
		return fmt.Errorf("HTTP server: %w", err)
	}
}

// newHTTPServer returns the HTTP server of h, with timeouts that bound
// slow clients (a load may take as long as the group's load timeout).
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
