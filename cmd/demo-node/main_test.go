package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshcache/meshcache"
)

// runMainEnv makes the test binary run main instead of the tests: the
// -cluster test starts this binary as its nodes.
const runMainEnv = "MESHCACHE_DEMO_NODE_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags(nil): %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"http", o.httpAddr, "127.0.0.1:8080"},
		{"gossip", o.gossipAddr, "127.0.0.1:7946"},
		{"rpc", o.rpcAddr, "127.0.0.1:0"},
		{"load-delay", o.loadDelay, 50 * time.Millisecond},
		{"ttl", o.ttl, 5 * time.Minute},
		{"hot-ttl", o.hotTTL, time.Minute},
		{"write-timeout", o.writeTimeout, 5 * time.Second},
		{"gossip-profile", o.gossipProfile, meshcache.GossipLAN},
		{"log-level", o.logLevel.String(), "INFO"},
		{"cluster", o.cluster, 0},
		{"origin", o.origin, ""},
		{"name", o.name, ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("default -%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{
		"-name", "a", "-http", "127.0.0.1:0", "-gossip", ":0", "-rpc", ":0",
		"-join", "h1:1, h2:2,,", "-origin", "/x", "-load-delay", "0", "-ttl", "1h",
		"-hot-ttl", "2s", "-write-timeout", "1s", "-gossip-profile", "wan", "-log-level", "debug",
	}, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if o.name != "a" || o.httpAddr != "127.0.0.1:0" || o.gossipAddr != ":0" || o.rpcAddr != ":0" ||
		o.origin != "/x" || o.loadDelay != 0 || o.ttl != time.Hour || o.hotTTL != 2*time.Second ||
		o.writeTimeout != time.Second || o.gossipProfile != meshcache.GossipWAN || o.logLevel.String() != "DEBUG" {
		t.Errorf("parseFlags = %+v", o)
	}
	if got := strings.Join(o.join, " "); got != "h1:1 h2:2" {
		t.Errorf("-join = %q, want %q", got, "h1:1 h2:2")
	}

	c, err := parseFlags([]string{"-cluster", "3"}, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags(-cluster 3): %v", err)
	}
	if c.cluster != 3 || c.gossipProfile != meshcache.GossipLocal {
		t.Errorf("-cluster 3: cluster %d, profile %v; want 3, local", c.cluster, c.gossipProfile)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	dir := t.TempDir()
	shortKey := filepath.Join(dir, "short")
	if err := os.WriteFile(shortKey, []byte("0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // in the message
	}{
		{"unknown flag", []string{"-nope"}, "not defined"},
		{"argument", []string{"extra"}, "unexpected arguments"},
		{"bad duration", []string{"-ttl", "soon"}, "invalid value"},
		{"zero ttl", []string{"-ttl", "0"}, "-ttl"},
		{"negative delay", []string{"-load-delay", "-1s"}, "-load-delay"},
		{"zero hot ttl", []string{"-hot-ttl", "0s"}, "-hot-ttl"},
		{"zero write timeout", []string{"-write-timeout", "0s"}, "-write-timeout"},
		{"profile", []string{"-gossip-profile", "fast"}, "-gossip-profile"},
		{"log level", []string{"-log-level", "loud"}, "-log-level"},
		{"cluster too big", []string{"-cluster", "100"}, "-cluster"},
		{"cluster negative", []string{"-cluster", "-1"}, "-cluster"},
		{"cluster with http", []string{"-cluster", "2", "-http", ":0"}, "-http cannot be used with -cluster"},
		{"cluster with join", []string{"-cluster", "2", "-join", "h:1"}, "-join cannot"},
		{"tls incomplete", []string{"-tls-cert", "c.pem"}, "give all three"},
		{"tls server name alone", []string{"-tls-server-name", "meshcache-peers"}, "-tls-server-name needs"},
		{"join standalone", []string{"-gossip", "", "-join", "h:1"}, "need a -gossip"},
		{"key missing", []string{"-secret-key-file", filepath.Join(dir, "none")}, "no such file"},
		{"key short", []string{"-secret-key-file", shortKey}, "want 16, 24 or 32"},
		{"tls missing", []string{"-tls-cert", "a", "-tls-key", "b", "-tls-ca", "c"}, "-tls-cert"},
		{"name too long", []string{"-name", strings.Repeat("n", 600)}, "-name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, err := parseFlags(tc.args, &stderr)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("parseFlags(%q) = %v, want a usage error", tc.args, err)
			}
			if code := exitCode(err, &stderr); code != 2 {
				t.Errorf("exitCode = %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	var stderr bytes.Buffer
	if code := exitCode(nil, &stderr); code != 0 {
		t.Errorf("exitCode(nil) = %d, want 0", code)
	}
	_, err := parseFlags([]string{"-h"}, &stderr)
	if code := exitCode(err, io.Discard); code != 0 {
		t.Errorf("exitCode(-h) = %d, want 0", code)
	}
	if !strings.Contains(stderr.String(), "-cluster") {
		t.Errorf("-h printed %q, want the flags", stderr.String())
	}
	stderr.Reset()
	if code := exitCode(errors.New("boom"), &stderr); code != 1 || !strings.Contains(stderr.String(), "boom") {
		t.Errorf("exitCode(boom) = %d, printed %q; want 1 and the error", code, stderr.String())
	}
}

func TestReadSecretKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, 16)
	raw32 := []byte("abcdefghijklmnopqrstuvwxyz012345")
	for _, tc := range []struct {
		name     string
		contents []byte
		want     []byte
	}{
		{"raw 16", raw, raw},
		{"raw 16 with newline", append(bytes.Clone(raw), '\n'), raw},
		{"raw 32 text", raw32, raw32},
		{"hex 16", []byte(hex.EncodeToString(raw)), raw},
		{"hex 24 with newline", []byte(hex.EncodeToString(bytes.Repeat([]byte{1}, 24)) + "\n"), bytes.Repeat([]byte{1}, 24)},
		{"hex 32 with CRLF", []byte(hex.EncodeToString(raw32) + "\r\n"), raw32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(path, tc.contents, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readSecretKey(path)
			if err != nil {
				t.Fatalf("readSecretKey: %v", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("readSecretKey = %x, want %x", got, tc.want)
			}
		})
	}
	for _, bad := range [][]byte{nil, []byte("short"), bytes.Repeat([]byte{'x'}, 17), bytes.Repeat([]byte{'x'}, 33)} {
		path := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if key, err := readSecretKey(path); err == nil {
			t.Errorf("readSecretKey(%q) = %x, want an error", bad, key)
		}
	}
}

func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := writeTestPKI(t, dir)
	if _, err := parseFlags([]string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", ca}, io.Discard); err == nil || !strings.Contains(err.Error(), "-secret-key-file") {
		t.Errorf("parseFlags with TLS and no -secret-key-file: %v, want a usage error naming -secret-key-file", err)
	}
	keyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(keyFile, bytes.Repeat([]byte{'k'}, 16), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", ca, "-secret-key-file", keyFile}, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	tc := o.tls
	if tc == nil || len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ClientCAs == nil || tc.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("tls config = %+v: want a certificate, both CA pools and required client certificates", tc)
	}
	if tc.ServerName != "" {
		t.Errorf("ServerName = %q without -tls-server-name, want empty (each peer's address)", tc.ServerName)
	}
	o, err = parseFlags([]string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", ca, "-secret-key-file", keyFile, "-tls-server-name", "meshcache-peers"}, io.Discard)
	if err != nil || o.tls.ServerName != "meshcache-peers" {
		t.Errorf("-tls-server-name: %v, ServerName %q", err, o.tls.ServerName)
	}
	if _, err := loadTLS(cert, key, cert+".missing"); err == nil {
		t.Errorf("loadTLS with a missing CA file: no error")
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadTLS(cert, key, empty); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Errorf("loadTLS with a CA file without PEM = %v, want a no-PEM error", err)
	}
}

// writeTestPKI writes a CA and a certificate for 127.0.0.1 signed by it.
func writeTestPKI(t *testing.T, dir string) (certFile, keyFile, caFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nodeTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	nodeDER, err := x509.CreateCertificate(rand.Reader, nodeTmpl, caCert, &nodeKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("node.pem", "CERTIFICATE", nodeDER), write("node-key.pem", "EC PRIVATE KEY", keyDER), write("ca.pem", "CERTIFICATE", caDER)
}
