package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport"
)

// TestBadInput sends bad requests to the HTTP API and random bytes to the
// gossip and RPC ports: each gets a clear error, no node crashes, and the
// cluster keeps serving.
func TestBadInput(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	const group = "bad"
	c.writeOrigin(group, "ok", "fine")
	c.touchGroup(group)
	target := c.nodes[1]

	t.Run("http", func(t *testing.T) {
		c := c.in(t)
		huge := bytes.Repeat([]byte("v"), 1<<20+1)
		tests := []struct {
			name   string
			method string
			path   string
			body   []byte
			want   []int // acceptable statuses
		}{
			{"key over 512 bytes", "GET", keyPath(group, strings.Repeat("k", 513)), nil, []int{400}},
			{"put key over 512 bytes", "PUT", keyPath(group, strings.Repeat("k", 513)), []byte("v"), []int{400}},
			{"key with NUL", "GET", keyPath(group, "a\x00b"), nil, []int{400, 404}},
			{"missing key", "GET", keyPath(group, "nope"), nil, []int{404}},
			{"body over 1 MiB", "PUT", keyPath(group, "big"), huge, []int{413}},
			{"unparsable ttl", "PUT", keyPath(group, "t") + "?ttl=soon", []byte("v"), []int{400}},
			{"negative ttl", "PUT", keyPath(group, "t") + "?ttl=-1s", []byte("v"), []int{400}},
			{"zero ttl", "PUT", keyPath(group, "t") + "?ttl=0s", []byte("v"), []int{400}},
			{"invalidate-tags without tag", "POST", "/v1/" + group + "/-/invalidate-tags", nil, []int{400}},
			{"unknown route", "GET", "/nope", nil, []int{404}},
			{"unknown version", "GET", "/v2/" + group + "/ok", nil, []int{404}},
			{"too many segments", "GET", "/v1/" + group + "/-/nope/more", nil, []int{404}},
			{"wrong method", "PATCH", keyPath(group, "ok"), nil, []int{405}},
		}
		for _, tt := range tests {
			r := c.do(tt.method, target, tt.path, tt.body)
			if !slices.Contains(tt.want, r.status) {
				t.Errorf("%s: %s %.80s = %d %.200q, want %v", tt.name, tt.method, tt.path, r.status, r.body, tt.want)
				continue
			}
			if msg, err := jsonError(r); err != nil {
				t.Errorf("%s: %s %.80s = %d: %v", tt.name, tt.method, tt.path, r.status, err)
			} else {
				t.Logf("%s: %d %s", tt.name, r.status, msg)
			}
		}

		// A good PUT still works, and its value is served everywhere.
		if r := c.do("PUT", target, keyPath(group, "put")+"?ttl=30s&tags=a,b", []byte("put value")); r.status != http.StatusNoContent {
			t.Errorf("PUT %s/put on %s = %d %s, want 204", group, target.name, r.status, r.body)
		}
		for _, n := range c.nodes {
			c.mustGet(n, group, "put", "put value")
		}

		// Keys and groups never reach outside the origin directory.
		secret := filepath.Join(filepath.Dir(c.origin), "secret")
		if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.writeOrigin("sub", "secret", "not the secret")
		for _, path := range []string{
			"/v1/" + group + "/..%2Fsecret",
			"/v1/" + group + "/..%2F..%2Fsecret",
			"/v1/%2E%2E/secret",
			"/v1/sub/..%2F..%2Fsecret",
			"/v1/" + group + "/%2E%2E",
		} {
			if r := c.do("GET", target, path, nil); r.status == http.StatusOK && r.body == "secret" {
				t.Errorf("GET %s on %s served a file outside the origin", path, target.name)
			} else if r.status/100 == 5 {
				t.Errorf("GET %s on %s = %d %s, want 4xx", path, target.name, r.status, r.body)
			}
		}

		// Groups are created on first use, up to a limit.
		var limited int
		for i := range 70 {
			r := c.do("GET", target, keyPath(fmt.Sprintf("g%d", i), "k"), nil)
			switch r.status {
			case http.StatusNotFound:
			case http.StatusBadRequest:
				limited++
			default:
				t.Errorf("GET g%d/k on %s = %d %s, want 404 or 400 (too many groups)", i, target.name, r.status, r.body)
			}
		}
		if limited == 0 {
			t.Errorf("70 new groups on %s: none refused, want the ones over 64 refused with 400", target.name)
		}
	})

	t.Run("gossip and rpc", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		garbage := func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			return b
		}

		// Gossip UDP: random datagrams, some starting with a plausible
		// memberlist message type.
		udp, err := net.Dial("udp", target.gossip)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			b := garbage(1 + rng.IntN(1400))
			if i%2 == 0 {
				b[0] = byte(i % 16)
			}
			if _, err := udp.Write(b); err != nil {
				t.Logf("UDP write %d: %v", i, err)
			}
		}
		udp.Close()

		// Gossip TCP: random streams, some with a plausible message type.
		for i := range 20 {
			b := garbage(1 + rng.IntN(64<<10))
			if i%2 == 0 {
				b[0] = byte(i % 16)
			}
			sendAndRead(t, target.gossip, b)
		}

		// RPC: garbage instead of a preface, a wrong protocol version, an
		// oversized frame, an empty frame, and random frames after a good
		// preface.
		preface := func(version uint32) []byte {
			return binary.BigEndian.AppendUint32([]byte("MSHC"), version)
		}
		frame := func(body []byte) []byte {
			return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
		}
		closes := []struct {
			name string
			data []byte
		}{
			{"garbage", garbage(4096)},
			{"wrong version", preface(transport.ProtocolVersion + 100)},
			{"oversized frame", append(preface(transport.ProtocolVersion), 0xff, 0xff, 0xff, 0xf0)},
			{"empty frame", append(preface(transport.ProtocolVersion), 0, 0, 0, 0)},
		}
		for _, tt := range closes {
			if !sendAndRead(t, target.rpc, tt.data) {
				t.Errorf("RPC %s: the connection stayed open, want it closed", tt.name)
			}
		}
		for range 20 {
			b := preface(transport.ProtocolVersion)
			for range 1 + rng.IntN(4) {
				b = append(b, frame(garbage(1+rng.IntN(512)))...)
			}
			sendAndRead(t, target.rpc, b)
		}
	})

	// Nothing crashed and the cluster keeps serving.
	checkRunning(t, c.nodes)
	c.waitMembers(c.nodes, names(c.nodes))
	for _, n := range c.nodes {
		if r := c.do("GET", n, "/healthz", nil); r.status != http.StatusOK {
			t.Errorf("GET /healthz on %s = %d %s, want 200", n.name, r.status, r.body)
		}
		c.mustGet(n, group, "ok", "fine")
	}
	t.Logf("%s logged %d lines mentioning an error", target.name, strings.Count(strings.ToLower(target.out.String()), "err"))
}

// sendAndRead connects to addr over TCP, writes data, and reads until the
// peer closes the connection (true) or 5s pass (false). A peer that
// resets the connection or stops reading also counts as closing.
func sendAndRead(t *testing.T, addr string, data []byte) (closed bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	if err := conn.SetDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(data); err != nil {
		return true // reset while writing: the peer closed
	}
	_, err = io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}

// jsonError checks that r carries a JSON error body and returns its
// message.
func jsonError(r response) (string, error) {
	if ct := r.header.Get("Content-Type"); !strings.Contains(ct, "json") {
		return "", fmt.Errorf("Content-Type %q, want JSON (body %.200q)", ct, r.body)
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		return "", fmt.Errorf("body %.200q: %w", r.body, err)
	}
	if body.Error == "" {
		return "", fmt.Errorf("body %.200q has no error message", r.body)
	}
	return body.Error, nil
}
