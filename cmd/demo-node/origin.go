package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshcache/meshcache"
	"github.com/meshcache/meshcache/l2"
)

// origin is the demo's database: a directory with one subdirectory per
// group and one file per key.
type origin struct {
	dir   string
	delay time.Duration // each load sleeps this long first
	ttl   time.Duration // the TTL of loaded values
	// maxBytes bounds a value; larger files fail to load.
	maxBytes int64
	// The groups' stale windows (-stale-if-error, -stale-while-revalidate);
	// 0: off.
	staleIfError, staleWhileRevalidate time.Duration
	// l2 is the groups' second level (-redis); nil: none.
	l2 l2.Store
}

// downFile is the file whose presence at the root of the origin directory
// makes every load fail, as in a database outage.
const downFile = ".down"

// errOriginDown is the loader's error while downFile exists. It reaches
// peers as text: statusOf recognises it by its text too.
var errOriginDown = errors.New("origin: down")

// errTooLarge is the loader's error for a file over origin.maxBytes.
var errTooLarge = errors.New("origin: file too large")

// loader returns the loader of group.
func (o *origin) loader(group string) meshcache.Loader {
	return meshcache.LoaderFunc(func(ctx context.Context, key string) (meshcache.Item, error) {
		return o.load(ctx, group, key)
	})
}

// load reads the value of key in group from the file dir/group/key, after
// sleeping o.delay (or until ctx ends). A missing file, or a group or key
// that is not a safe file name, is [meshcache.ErrNotFound]: load never
// reads outside dir (symbolic links included). The value is tagged with the
// part of key before its first ':', if any.
func (o *origin) load(ctx context.Context, group, key string) (meshcache.Item, error) {
	if _, err := os.Stat(filepath.Join(o.dir, downFile)); err == nil {
		return meshcache.Item{}, fmt.Errorf("load %q in group %q: %w (%s exists)", key, group, errOriginDown, downFile)
	}
	if !safeName(group) || !safeName(key) {
		return meshcache.Item{}, fmt.Errorf("origin: %q in group %q is not a file name: %w", key, group, meshcache.ErrNotFound)
	}
	if o.delay > 0 {
		t := time.NewTimer(o.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return meshcache.Item{}, fmt.Errorf("origin: load %q in group %q: %w", key, group, ctx.Err())
		}
	}
	v, err := o.read(group, key)
	if err != nil {
		return meshcache.Item{}, err
	}
	it := meshcache.Item{Value: v, TTL: o.ttl}
	if tag, _, ok := strings.Cut(key, ":"); ok && tag != "" {
		it.Tags = []string{tag}
	}
	return it, nil
}

// read returns the contents of dir/group/key. os.OpenInRoot refuses any
// path, symbolic links included, that leads out of dir.
func (o *origin) read(group, key string) ([]byte, error) {
	f, err := os.OpenInRoot(o.dir, filepath.Join(group, key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("origin: no file for %q in group %q: %w", key, group, meshcache.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("origin: %q in group %q is not a regular file: %w", key, group, meshcache.ErrNotFound)
	}
	v, err := io.ReadAll(io.LimitReader(f, o.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	if int64(len(v)) > o.maxBytes {
		return nil, fmt.Errorf("origin: %q in group %q is over %d bytes: %w", key, group, o.maxBytes, errTooLarge)
	}
	return v, nil
}

// safeName reports whether s can be used as one file name inside the
// origin directory: not empty, not "." or "..", and without a path
// separator or NUL.
func safeName(s string) bool {
	return s != "" && len(s) <= 255 && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}

// seedOrigin writes the example files of a -cluster origin into dir.
func seedOrigin(dir string) error {
	files := map[string]string{
		"pages/home": "<h1>Welcome to meshcache</h1>\n",
	}
	names := []string{"Ada Lovelace", "Grace Hopper", "Alan Turing", "Barbara Liskov", "Ken Thompson"}
	for i, name := range names {
		files[fmt.Sprintf("users/user:%d", i+1)] = fmt.Sprintf("{\"id\": %d, \"name\": %q}\n", i+1, name)
	}
	for path, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("seed the origin: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("seed the origin: %w", err)
		}
	}
	return nil
}

// originGroups returns the names of dir's subdirectories that are safe
// group names, at most limit of them.
func originGroups(dir string, limit int) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && safeName(e.Name()) && len(names) < limit {
			names = append(names, e.Name())
		}
	}
	return names
}
