package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshcache/meshcache"
)

// writeFile writes dir/rel, creating its directories.
func writeFile(t *testing.T, dir, rel, contents string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOriginLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "users/user:42", "ada")
	writeFile(t, dir, "users/plain", "p")
	writeFile(t, dir, "users/:x", "x")
	writeFile(t, dir, "secret", "top secret") // outside every group
	o := &origin{dir: dir, ttl: time.Minute, maxBytes: 1 << 10}
	ctx := context.Background()
	for _, tc := range []struct {
		group, key string
		value      string
		tags       []string
	}{
		{"users", "user:42", "ada", []string{"user"}},
		{"users", "plain", "p", nil},
		{"users", ":x", "x", nil},
	} {
		it, err := o.load(ctx, tc.group, tc.key)
		if err != nil {
			t.Errorf("load(%q, %q): %v", tc.group, tc.key, err)
			continue
		}
		if string(it.Value) != tc.value || !slices.Equal(it.Tags, tc.tags) || it.TTL != time.Minute {
			t.Errorf("load(%q, %q) = %q tags %q ttl %v, want %q tags %q ttl 1m", tc.group, tc.key, it.Value, it.Tags, it.TTL, tc.value, tc.tags)
		}
	}
	for _, tc := range []struct{ group, key string }{
		{"users", "missing"},
		{"nogroup", "user:42"},
		{"users", "../secret"},
		{"users", ".."},
		{"users", "."},
		{"users", ""},
		{"users", "a\\b"},
		{"users", "a\x00b"},
		{"..", "secret"},
		{".", "secret"},
		{"", "secret"},
		{"users/..", "secret"},
		{"users", "/etc/passwd"},
	} {
		if it, err := o.load(ctx, tc.group, tc.key); !errors.Is(err, meshcache.ErrNotFound) {
			t.Errorf("load(%q, %q) = %q, %v; want ErrNotFound", tc.group, tc.key, it.Value, err)
		}
	}
}

func TestOriginNeverLeavesDir(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, outside, "secret", "top secret")
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "users"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "users", "link")); err != nil {
		t.Skipf("cannot make a symbolic link: %v", err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "users", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := &origin{dir: dir, ttl: time.Minute, maxBytes: 1 << 10}
	for _, tc := range []struct{ group, key string }{{"users", "link"}, {"out", "secret"}, {"users", "sub"}} {
		it, err := o.load(context.Background(), tc.group, tc.key)
		if err == nil {
			t.Errorf("load(%q, %q) = %q, want an error", tc.group, tc.key, it.Value)
		}
	}
}

func TestOriginTooLarge(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "g/big", strings.Repeat("x", 11))
	writeFile(t, dir, "g/fits", strings.Repeat("x", 10))
	o := &origin{dir: dir, ttl: time.Minute, maxBytes: 10}
	if _, err := o.load(context.Background(), "g", "big"); !errors.Is(err, errTooLarge) {
		t.Errorf("load(big) = %v, want errTooLarge", err)
	}
	if it, err := o.load(context.Background(), "g", "fits"); err != nil || len(it.Value) != 10 {
		t.Errorf("load(fits) = %d bytes, %v; want 10 bytes", len(it.Value), err)
	}
}

func TestOriginDelayHonoursContext(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "g/k", "v")
	o := &origin{dir: dir, delay: time.Hour, ttl: time.Minute, maxBytes: 10}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := o.load(ctx, "g", "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("load with a cancelled context and an hour of delay = %v, want context.Canceled", err)
	}
}

func TestSafeName(t *testing.T) {
	for s, want := range map[string]bool{
		"users": true, "user:1": true, "a b": true, "-": true, "...": true, "é": true,
		"": false, ".": false, "..": false, "a/b": false, "a\\b": false, "a\x00": false, "/": false,
	} {
		if got := safeName(s); got != want {
			t.Errorf("safeName(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestSeedOrigin(t *testing.T) {
	dir := t.TempDir()
	if err := seedOrigin(dir); err != nil {
		t.Fatalf("seedOrigin: %v", err)
	}
	o := &origin{dir: dir, ttl: time.Minute, maxBytes: 1 << 10}
	for _, key := range []string{"user:1", "user:5"} {
		if it, err := o.load(context.Background(), "users", key); err != nil || !strings.Contains(string(it.Value), `"id"`) {
			t.Errorf("load(users, %s) = %q, %v", key, it.Value, err)
		}
	}
	if _, err := o.load(context.Background(), "pages", "home"); err != nil {
		t.Errorf("load(pages, home): %v", err)
	}
	if got := originGroups(dir, 10); !slices.Equal(got, []string{"pages", "users"}) {
		t.Errorf("originGroups = %q, want [pages users]", got)
	}
	if got := originGroups(dir, 1); len(got) != 1 {
		t.Errorf("originGroups(limit 1) = %q, want one", got)
	}
}
