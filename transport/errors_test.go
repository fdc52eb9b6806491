package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// TestErrorOfTrimsAndBounds: whatever a peer sends (an older one put the
// class's text in front of its message, and repeated it), the error has
// the class's text once and at most MaxErrorMessage bytes of message.
func TestErrorOfTrimsAndBounds(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	tests := []struct {
		name string
		code wirepb.Code
		msg  string
		want string // the error's text; "" to check the bound only
		is   []error
	}{
		{"plain", wirepb.Code_CODE_LOADER, "db down", "transport: loader error: db down", []error{ErrLoader}},
		{"prefixed", wirepb.Code_CODE_LOADER, "transport: loader error: db down", "transport: loader error: db down", []error{ErrLoader}},
		{"repeated", wirepb.Code_CODE_LOADER, "transport: loader error: transport: loader error: db down", "transport: loader error: db down", []error{ErrLoader}},
		{"only the class", wirepb.Code_CODE_NOT_FOUND, "transport: not found", "transport: not found", []error{ErrNotFound}},
		{"panic", wirepb.Code_CODE_LOADER_PANIC, "", "transport: loader panicked", []error{ErrLoaderPanic, ErrLoader}},
		{"panic prefixed", wirepb.Code_CODE_LOADER_PANIC, "transport: loader panicked", "transport: loader panicked", []error{ErrLoaderPanic, ErrLoader}},
		{"internal", wirepb.Code_CODE_INTERNAL, "oops", "transport: loader error: oops", []error{ErrLoader}},
		{"deadline", wirepb.Code_CODE_DEADLINE_EXCEEDED, "slow", "", []error{ErrUnavailable, context.DeadlineExceeded}},
		{"long", wirepb.Code_CODE_LOADER, "db down: " + long, "", []error{ErrLoader}},
		{"long prefixed", wirepb.Code_CODE_BAD_REQUEST, "transport: bad request: " + long, "", []error{ErrBadRequest}},
		{"long deadline", wirepb.Code_CODE_DEADLINE_EXCEEDED, long, "", []error{ErrUnavailable, context.DeadlineExceeded}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := errorOf(tc.code, []byte(tc.msg))
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("errorOf(%v, %.40q) = %.300v, want it to wrap %v", tc.code, tc.msg, err, target)
				}
			}
			text := err.Error()
			if tc.want != "" && text != tc.want {
				t.Errorf("errorOf(%v, %.40q) = %q, want %q", tc.code, tc.msg, text, tc.want)
			}
			// The class's text and what the receiver adds (": remote: ")
			// come on top of the message.
			if limit := MaxErrorMessage + 64; len(text) > limit {
				t.Errorf("errorOf(%v, %d bytes) has %d bytes, want at most %d", tc.code, len(tc.msg), len(text), limit)
			}
			if c := strings.Count(text, sentinelOf(tc.code).Error()); c != 1 {
				t.Errorf("errorOf(%v, %.40q) = %.300q: the class's text appears %d times, want once", tc.code, tc.msg, text, c)
			}
		})
	}
}

// TestMessageOf: the message a sender puts on the wire lacks the class's
// text (the receiver adds it back) and fits in MaxErrorMessage bytes.
func TestMessageOf(t *testing.T) {
	long := strings.Repeat("é", 1000) // cut inside a rune unless careful
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: db down", ErrLoader), "db down"},
		{ErrNotFound, ""},
		{ErrLoaderPanic, ""},
		{errorOf(wirepb.Code_CODE_LOADER_PANIC, nil), ""},
		{errors.New("plain"), "plain"},
		{fmt.Errorf("fake: %w: boom", ErrLoader), "fake: transport: loader error: boom"},
	}
	for _, tc := range tests {
		if got := messageOf(tc.err); got != tc.want {
			t.Errorf("messageOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	got := messageOf(fmt.Errorf("%w: %s", ErrLoader, long))
	if len(got) > MaxErrorMessage || !utf8.ValidString(got) || !strings.HasPrefix(got, "éé") || !strings.HasSuffix(got, "...") {
		t.Errorf("messageOf(%d bytes) = %d bytes %q, want at most %d bytes of valid UTF-8 ending in ...", len(long), len(got), got, MaxErrorMessage)
	}
	if got := codeOf(fmt.Errorf("x: %w", ErrLoaderPanic)); got != wirepb.Code_CODE_LOADER_PANIC {
		t.Errorf("codeOf(a loader panic) = %v, want %v", got, wirepb.Code_CODE_LOADER_PANIC)
	}
	if got := codeOf(errorOf(wirepb.Code_CODE_LOADER_PANIC, nil)); got != wirepb.Code_CODE_LOADER_PANIC {
		t.Errorf("codeOf(errorOf(CODE_LOADER_PANIC)) = %v, want it back", got)
	}
}

// TestRemoteErrorsBounded sends long, prefixed errors and a panic through
// a real server and client, with Get and GetMany: the caller gets each
// class, the message's start, and at most MaxErrorMessage bytes of it.
func TestRemoteErrorsBounded(t *testing.T) {
	long := "db down: " + strings.Repeat("x", 10_000)
	errs := map[string]error{
		"long":     fmt.Errorf("%w: %s", ErrLoader, long),
		"repeated": fmt.Errorf("%w: %w: db down", ErrLoader, ErrLoader),
		"panic":    ErrLoaderPanic,
	}
	h := &fakeHandler{
		get: func(_ context.Context, req GetRequest) (GetResponse, error) {
			return GetResponse{}, errs[req.Key]
		},
		getMany: func(_ context.Context, req GetManyRequest) (GetManyResponse, error) {
			var resp GetManyResponse
			for _, k := range req.Keys {
				resp.Results = append(resp.Results, KeyResult{Key: k, Err: errs[k]})
			}
			return resp, nil
		},
	}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	resp, err := c.GetMany(t.Context(), s.Addr(), GetManyRequest{Group: "g", Keys: []string{"long", "repeated", "panic"}})
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	many := make(map[string]error)
	for _, r := range resp.Results {
		many[r.Key] = r.Err
	}
	for key, want := range map[string]struct {
		is     error
		prefix string // of the message, after the class's text
	}{
		"long":     {ErrLoader, "db down: xxx"},
		"repeated": {ErrLoader, "db down"},
		"panic":    {ErrLoaderPanic, ""},
	} {
		_, getErr := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: key})
		for op, err := range map[string]error{"Get": getErr, "GetMany": many[key]} {
			if !errors.Is(err, want.is) || !errors.Is(err, ErrLoader) {
				t.Errorf("%s(%q) = %.300v, want %v and %v", op, key, err, want.is, ErrLoader)
				continue
			}
			text := err.Error()
			class := want.is.Error()
			if c := strings.Count(text, class); c != 1 {
				t.Errorf("%s(%q) = %.300q: %q appears %d times, want once", op, key, text, class, c)
			}
			msg := strings.TrimPrefix(text[strings.Index(text, class)+len(class):], ": ")
			if !strings.HasPrefix(msg, want.prefix) || len(msg) > MaxErrorMessage {
				t.Errorf("%s(%q): message %.80q... of %d bytes, want it to start with %q and have at most %d", op, key, msg, len(msg), want.prefix, MaxErrorMessage)
			}
		}
	}
	// What goes on the wire for a GetMany is bounded by the sender too.
	var (
		a arena
		m wirepb.GetManyResponse
	)
	encodeGetManyResponse(&a, &m, GetManyResponse{Results: []KeyResult{{Key: "long", Err: errs["long"]}}})
	if got := m.Results[0].GetErrorMessage(); len(got) > MaxErrorMessage || strings.HasPrefix(string(got), ErrLoader.Error()) {
		t.Errorf("encoded message = %.80q... (%d bytes), want at most %d bytes, without the class's text", got, len(got), MaxErrorMessage)
	}
}
