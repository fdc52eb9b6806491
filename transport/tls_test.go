package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"
)

// testCA is a certificate authority made up for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a leaf certificate for 127.0.0.1, valid for both server and
// client authentication.
func (ca *testCA) issue(t *testing.T, name string, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	other := newTestCA(t, "rogue CA")
	serverCert := ca.issue(t, "server", 2)
	clientCert := ca.issue(t, "client", 3)
	rogueCert := other.issue(t, "rogue", 4)

	// One cluster config for both sides: ClientCAs defaults to RootCAs.
	s, rec := startServer(t, ServerConfig{TLS: &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		RootCAs:      ca.pool,
	}}, &fakeHandler{})

	tests := []struct {
		name   string
		tls    *tls.Config
		wantOK bool
	}{
		{name: "mutual", tls: &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: ca.pool}, wantOK: true},
		{name: "mutual TLS 1.2", tls: &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: ca.pool, MaxVersion: tls.VersionTLS12}, wantOK: true},
		{name: "no client cert", tls: &tls.Config{RootCAs: ca.pool}},
		{name: "untrusted client cert", tls: &tls.Config{Certificates: []tls.Certificate{rogueCert}, RootCAs: ca.pool}},
		{name: "untrusted server", tls: &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: other.pool}},
		{name: "plain TCP client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestClient(t, ClientConfig{TLS: tt.tls})
			got, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"})
			if tt.wantOK {
				if err != nil || string(got.Value.Value) != "g/k" {
					t.Errorf("Get over TLS = %q, %v, want %q", got.Value.Value, err, "g/k")
				}
				return
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("Get error = %v, want ErrUnavailable", err)
			}
		})
	}
	rec.waitFor(t, "tls handshake")
}

func TestClientTLSRequiresRootCAs(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	s, _ := startServer(t, ServerConfig{TLS: &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "server", 2)},
		RootCAs:      ca.pool,
	}}, &fakeHandler{})
	clientCert := ca.issue(t, "client", 3)
	tests := []struct {
		name string
		cfg  ClientConfig
		want error
	}{
		{name: "plain TCP", cfg: ClientConfig{}},
		{name: "TLS with RootCAs", cfg: ClientConfig{TLS: &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: ca.pool}}},
		{name: "TLS without RootCAs", cfg: ClientConfig{TLS: &tls.Config{Certificates: []tls.Certificate{clientCert}}}, want: ErrBadConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); !errors.Is(err, tt.want) {
				t.Errorf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
	// A client built from the bad config refuses to call, without dialing.
	c, rec := newTestClient(t, tests[2].cfg)
	if _, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("Get with a TLS client without RootCAs error = %v, want ErrBadConfig", err)
	}
	if n := serverConns(s); n != 0 {
		t.Errorf("server has %d connections, want none (the client must not dial)", n)
	}
	rec.waitFor(t, "unusable client config")
}
