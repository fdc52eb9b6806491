package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/meshcache/meshcache"
)

// maxClusterSize bounds -cluster: it starts processes on this machine.
const maxClusterSize = 16

// options are the parsed and checked flags.
type options struct {
	name          string
	httpAddr      string
	gossipAddr    string
	rpcAddr       string
	join          []string
	origin        string
	loadDelay     time.Duration
	ttl           time.Duration
	hotTTL        time.Duration
	writeTimeout  time.Duration
	minority      bool
	fetchTimeout  time.Duration
	staleIfError  time.Duration
	staleRevalid  time.Duration
	redis         string
	redisPrefix   string
	secretKeyFile string
	tlsCert       string
	tlsKey        string
	tlsCA         string
	tlsServerName string
	gossipProfile meshcache.GossipProfile
	logLevel      slog.Level
	cluster       int

	// set holds the names of the flags given on the command line.
	set map[string]bool
	// Loaded from the files named by the flags above.
	secretKey []byte
	tls       *tls.Config
}

// A usageError is a problem with the command line: the process exits with
// status 2.
type usageError struct {
	err      error
	reported bool // the flag package already printed it, with the usage
	help     bool // -h or -help: the usage was asked for
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// parseFlags parses and checks args, and loads the secret key and TLS
// files they name. Every problem is a *usageError.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo-node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: demo-node [flags]        run one node\n"+
			"       demo-node -cluster N     run N nodes on 127.0.0.1\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.name, "name", "", "node name, unique in the cluster (default: the host name and a random suffix)")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:8080", "HTTP API listen address (port 0 picks one)")
	fs.StringVar(&o.gossipAddr, "gossip", "127.0.0.1:7946", "gossip listen address (port 0 picks one; empty: a standalone node)")
	fs.StringVar(&o.rpcAddr, "rpc", "127.0.0.1:0", "peer transport listen address (port 0 picks one)")
	join := fs.String("join", "", "gossip addresses of live members to join, host:port,host:port")
	fs.StringVar(&o.origin, "origin", "", "origin directory: the value of key K in group G is the file DIR/G/K (default: a new temporary directory)")
	fs.DurationVar(&o.loadDelay, "load-delay", 50*time.Millisecond, "how long each load sleeps, like a slow database")
	fs.DurationVar(&o.ttl, "ttl", 5*time.Minute, "time to live of loaded values")
	fs.DurationVar(&o.hotTTL, "hot-ttl", time.Minute, "longest time a copy of another node's value is kept")
	fs.DurationVar(&o.fetchTimeout, "fetch-timeout", 0, "how long a request waits on a peer that sends nothing at all before it is taken for unreachable (default: the library's, 1s)")
	fs.DurationVar(&o.staleIfError, "stale-if-error", 0, "serve a value up to this long past its TTL when its load fails (0: off)")
	fs.DurationVar(&o.staleRevalid, "stale-while-revalidate", 0, "serve a value up to this long past its TTL at once, refreshing it in the background (0: off)")
	fs.StringVar(&o.redis, "redis", "", "Redis `host:port` to keep a shared second level in (L2, under the owners: what a node loads is written there, and found there by the next owner or after a restart; empty: none)")
	fs.StringVar(&o.redisPrefix, "redis-prefix", "meshcache-demo:", "prefix of the keys the second level keeps in Redis")
	fs.BoolVar(&o.minority, "minority-serves", false, "keep serving from the caches when only a minority of the cluster answers (gives up the read-your-invalidation guarantee in a partition)")
	fs.DurationVar(&o.writeTimeout, "write-timeout", meshcache.DefaultWriteTimeout, "how long a write waits for every member's acknowledgement")
	fs.StringVar(&o.secretKeyFile, "secret-key-file", "", "file with the gossip encryption key: 16, 24 or 32 raw bytes, or their hex")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate of this node for the peer transport (with -tls-key and -tls-ca: mutual TLS)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "PEM certificates of the CA that signs every member's certificate")
	fs.StringVar(&o.tlsServerName, "tls-server-name", "", "name to verify in every peer's certificate (a DNS name the certificates carry) instead of the peer's IP address, for addresses not known in advance (pods)")
	profile := fs.String("gossip-profile", "", "gossip timings: lan, local or wan (default lan; local with -cluster)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&o.cluster, "cluster", 0, fmt.Sprintf("run a local cluster of `N` nodes (1 to %d) as child processes", maxClusterSize))

	if err := fs.Parse(args); err != nil {
		return o, &usageError{err: err, reported: true, help: errors.Is(err, flag.ErrHelp)}
	}
	if fs.NArg() > 0 {
		return o, usagef("unexpected arguments: %q", fs.Args())
	}
	o.set = make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })

	for _, addr := range strings.Split(*join, ",") {
		if addr = strings.TrimSpace(addr); addr != "" {
			o.join = append(o.join, addr)
		}
	}
	switch *profile {
	case "", "lan":
		o.gossipProfile = meshcache.GossipLAN
		if *profile == "" && o.cluster > 0 {
			o.gossipProfile = meshcache.GossipLocal
		}
	case "local":
		o.gossipProfile = meshcache.GossipLocal
	case "wan":
		o.gossipProfile = meshcache.GossipWAN
	default:
		return o, usagef("-gossip-profile %q: want lan, local or wan", *profile)
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, usagef("-log-level %q: want debug, info, warn or error", *level)
	}
	if err := o.check(); err != nil {
		return o, err
	}
	if err := o.loadFiles(); err != nil {
		return o, &usageError{err: err}
	}
	return o, nil
}

// check reports flags out of range or that do not go together.
func (o *options) check() error {
	switch {
	case o.loadDelay < 0:
		return usagef("-load-delay %v: must not be negative", o.loadDelay)
	case o.ttl <= 0:
		return usagef("-ttl %v: must be positive", o.ttl)
	case o.hotTTL <= 0:
		return usagef("-hot-ttl %v: must be positive", o.hotTTL)
	case o.fetchTimeout < 0:
		return usagef("-fetch-timeout %v: must not be negative", o.fetchTimeout)
	case o.staleIfError < 0:
		return usagef("-stale-if-error %v: must not be negative", o.staleIfError)
	case o.staleRevalid < 0:
		return usagef("-stale-while-revalidate %v: must not be negative", o.staleRevalid)
	case o.writeTimeout <= 0:
		return usagef("-write-timeout %v: must be positive", o.writeTimeout)
	case o.cluster < 0 || o.cluster > maxClusterSize:
		return usagef("-cluster %d: want 1 to %d nodes", o.cluster, maxClusterSize)
	case len(o.name) > meshcache.MaxKeyLen:
		return usagef("-name of %d bytes: at most %d", len(o.name), meshcache.MaxKeyLen)
	}
	if tlsFlags := btoi(o.tlsCert != "") + btoi(o.tlsKey != "") + btoi(o.tlsCA != ""); tlsFlags != 0 && tlsFlags != 3 {
		return usagef("-tls-cert, -tls-key and -tls-ca go together: give all three or none")
	}
	if o.tlsServerName != "" && o.tlsCert == "" {
		return usagef("-tls-server-name needs -tls-cert, -tls-key and -tls-ca")
	}
	if o.tlsCert != "" && o.secretKeyFile == "" {
		return usagef("-tls-cert needs -secret-key-file: gossip carries membership and writes, so a TLS cluster encrypts and authenticates it too")
	}
	if o.cluster > 0 {
		for _, name := range []string{"name", "http", "gossip", "rpc", "join"} {
			if o.set[name] {
				return usagef("-%s cannot be used with -cluster: the cluster picks names and ports itself", name)
			}
		}
		return nil
	}
	if o.gossipAddr == "" && (len(o.join) > 0 || o.tlsCert != "" || o.secretKeyFile != "") {
		return usagef("-join, -secret-key-file and -tls-* need a -gossip address")
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// loadFiles reads the secret key and the TLS files.
func (o *options) loadFiles() error {
	if o.secretKeyFile != "" {
		key, err := readSecretKey(o.secretKeyFile)
		if err != nil {
			return err
		}
		o.secretKey = key
	}
	if o.tlsCert != "" {
		tc, err := loadTLS(o.tlsCert, o.tlsKey, o.tlsCA)
		if err != nil {
			return err
		}
		tc.ServerName = o.tlsServerName // empty: each peer's address
		o.tls = tc
	}
	return nil
}

// readSecretKey reads a gossip key: 16, 24 or 32 raw bytes, or the hex of
// them, with trailing white space ignored.
func readSecretKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-secret-key-file: %w", err)
	}
	validLen := func(n int) bool { return n == 16 || n == 24 || n == 32 }
	if trimmed := bytes.TrimRight(b, "\r\n\t "); validLen(hex.DecodedLen(len(trimmed))) {
		if key, err := hex.DecodeString(string(trimmed)); err == nil {
			return key, nil
		}
	}
	raw := bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if validLen(len(raw)) {
		return raw, nil
	}
	return nil, fmt.Errorf("-secret-key-file %s: %d bytes; want 16, 24 or 32 bytes, or their hex", path, len(raw))
}

// loadTLS builds the peer transport's mutual TLS config: this node's
// certificate, and the CA pool to verify peers with, both as servers and as
// clients.
func loadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-tls-ca %s: no PEM certificate found", caFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
