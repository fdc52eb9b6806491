// Package redisl2 is a meshcache second level ([l2.Store]) on Redis, through
// github.com/redis/go-redis/v9.
//
// Layout, for a prefix P and a group G (every key of a group carries the
// hash tag {G}, so that a group lives on one Redis Cluster slot and the
// scripts below may touch several of its keys):
//
//	P{G}:e:KEY   hash: v the value, c the clear generation it was stored
//	             under, tTAG the generation of each tag; expires with the entry
//	P{G}:v:KEY   the key's version: bumped by each Delete, kept VersionTTL
//	P{G}:f       the group's version: bumped by InvalidateTags and Clear
//	P{G}:c       the group's clear generation
//	P{G}:t:TAG   a tag's generation
//
// Get, Set and Delete are one Lua script call each, whatever the number of
// keys: one round trip. InvalidateTags and Clear are one MULTI/EXEC. The
// generation and group keys never expire (one small key per invalidated tag
// and per group); versions expire [l2.VersionTTL] after the key's last Delete.
//
// What the guarantee asks of the Redis:
//   - maxmemory-policy noeviction (entries expire with their TTL, so
//     memory stays bounded by what is loaded within a TTL): an eviction
//     policy may drop a version or a tag generation, and a value deleted
//     under it could be found again;
//   - no restore of an older dump: it brings back values deleted since (a
//     cache needs no persistence; else AOF with appendfsync always);
//   - acknowledged writes that survive a failover (replication is
//     asynchronous: a delete acknowledged by a primary that then fails may
//     be lost).
//
// Create the client with ContextTimeoutEnabled, so that the deadlines of
// meshcache's contexts bound each call; without it go-redis applies its own
// read and write timeouts (3 s by default) instead.
package redisl2

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/meshcache/meshcache/l2"
)

// A Store is an [l2.Store] on Redis. It is safe for concurrent use and owns
// nothing: closing the client is the caller's.
type Store struct {
	c      redis.UniversalClient
	prefix string
}

var _ l2.Store = (*Store)(nil)

// New returns a store that keeps its keys under prefix in c. Two stores
// with the same prefix on the same Redis share their data; give each
// fleet (or environment) its own prefix.
func New(c redis.UniversalClient, prefix string) *Store {
	return &Store{c: c, prefix: prefix}
}

var (
	//go:embed get.lua
	getSource string
	//go:embed set.lua
	setSource string
	//go:embed delete.lua
	deleteSource string

	getScript    = redis.NewScript(getSource)
	setScript    = redis.NewScript(setSource)
	deleteScript = redis.NewScript(deleteSource)
)

func (s *Store) base(group string) string     { return s.prefix + "{" + group + "}:" }
func (s *Store) fence(group string) string    { return s.base(group) + "f" }
func (s *Store) clearGen(group string) string { return s.base(group) + "c" }
func (s *Store) tagPrefix(group string) string {
	return s.base(group) + "t:"
}

// keysFor returns the group's fence and clear keys, then the entry and
// version key of each key.
func (s *Store) keysFor(group string, n int, key func(int) string) []string {
	b := s.base(group)
	out := make([]string, 0, 2+2*n)
	out = append(out, s.fence(group), s.clearGen(group))
	for i := range n {
		k := key(i)
		out = append(out, b+"e:"+k, b+"v:"+k)
	}
	return out
}

// Get implements [l2.Store].
func (s *Store) Get(ctx context.Context, group string, keys ...string) ([]l2.Result, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ks := s.keysFor(group, len(keys), func(i int) string { return keys[i] })
	reply, err := getScript.Run(ctx, s.c, ks, s.tagPrefix(group)).Slice()
	if err != nil {
		return nil, unavailable("get", err)
	}
	if len(reply) != 1+len(keys) {
		return nil, corrupt("get: %d replies for %d keys", len(reply)-1, len(keys))
	}
	fence, err := counter(reply[0])
	if err != nil {
		return nil, err
	}
	out := make([]l2.Result, len(keys))
	for i := range keys {
		r, ok := reply[1+i].([]any)
		if !ok || len(r) == 0 || len(r) == 2 {
			return nil, corrupt("get: reply for key %d of shape %T/%d", i, reply[1+i], len(r))
		}
		res := &out[i]
		res.Version.Group = fence
		if res.Version.Key, err = counter(r[0]); err != nil {
			return nil, err
		}
		if len(r) == 1 {
			continue
		}
		v, ok1 := r[1].(string)
		ms, ok2 := r[2].(int64)
		if !ok1 || !ok2 {
			return nil, corrupt("get: entry of shape %T, %T", r[1], r[2])
		}
		res.Found, res.Value, res.TTL = true, []byte(v), time.Duration(ms)*time.Millisecond
		for _, t := range r[3:] {
			tag, ok := t.(string)
			if !ok {
				return nil, corrupt("get: tag of type %T", t)
			}
			res.Tags = append(res.Tags, tag)
		}
	}
	return out, nil
}

// Set implements [l2.Store]. Items with a TTL under a millisecond are not
// stored.
func (s *Store) Set(ctx context.Context, group string, items ...l2.Item) (int, error) {
	var keep []l2.Item
	for _, it := range items {
		if it.TTL >= time.Millisecond {
			keep = append(keep, it)
		}
	}
	if len(keep) == 0 {
		return 0, nil
	}
	ks := s.keysFor(group, len(keep), func(i int) string { return keep[i].Key })
	args := []any{s.tagPrefix(group)}
	for _, it := range keep {
		args = append(args,
			strconv.FormatUint(it.Version.Key, 10), strconv.FormatUint(it.Version.Group, 10),
			it.Value, it.TTL.Milliseconds(), len(it.Tags))
		for _, t := range it.Tags {
			args = append(args, t)
		}
	}
	n, err := setScript.Run(ctx, s.c, ks, args...).Int()
	if err != nil {
		return 0, unavailable("set", err)
	}
	return n, nil
}

// Delete implements [l2.Store].
func (s *Store) Delete(ctx context.Context, group string, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	ks := s.keysFor(group, len(keys), func(i int) string { return keys[i] })
	err := deleteScript.Run(ctx, s.c, ks, l2.VersionTTL.Milliseconds()).Err()
	if err != nil {
		return unavailable("delete", err)
	}
	return nil
}

// InvalidateTags implements [l2.Store].
func (s *Store) InvalidateTags(ctx context.Context, group string, tags ...string) error {
	if len(tags) == 0 {
		return nil
	}
	tp := s.tagPrefix(group)
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, t := range tags {
			p.Incr(ctx, tp+t)
		}
		p.Incr(ctx, s.fence(group))
		return nil
	})
	if err != nil {
		return unavailable("invalidate tags", err)
	}
	return nil
}

// Clear implements [l2.Store]. Entries of the group stay in Redis, not
// found, until their TTL.
func (s *Store) Clear(ctx context.Context, group string) error {
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, s.clearGen(group))
		p.Incr(ctx, s.fence(group))
		return nil
	})
	if err != nil {
		return unavailable("clear", err)
	}
	return nil
}

// counter parses a generation or version as the scripts return it.
func counter(v any) (uint64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, corrupt("counter of type %T", v)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, corrupt("counter %q", s)
	}
	return n, nil
}

// unavailable classifies an error of a call to Redis: a key of the wrong
// type is corrupt data, anything else an unavailable store.
func unavailable(op string, err error) error {
	var re redis.Error
	if errors.As(err, &re) && strings.Contains(re.Error(), "WRONGTYPE") {
		return fmt.Errorf("%w: redis %s: %w", l2.ErrCorrupt, op, err)
	}
	return fmt.Errorf("%w: redis %s: %w", l2.ErrUnavailable, op, err)
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: redis %s", l2.ErrCorrupt, fmt.Sprintf(format, args...))
}
