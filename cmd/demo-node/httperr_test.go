package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/meshcache/meshcache"
)

func TestWriteFailure(t *testing.T) {
	partial := &meshcache.InvalidateError{Op: "invalidate", Group: "users", Unacked: []string{"n2", "n3"}}
	for _, tc := range []struct {
		err      error
		fallback int
		code     int
	}{
		{fmt.Errorf("wrapped: %w", partial), 500, 503},
		{fmt.Errorf("x: %w", meshcache.ErrNotFound), 502, 404},
		{fmt.Errorf("x: %w", meshcache.ErrKeyTooLong), 502, 400},
		{fmt.Errorf("x: %w", meshcache.ErrInvalidTag), 500, 400},
		{fmt.Errorf("x: %w", meshcache.ErrClosed), 500, 503},
		{fmt.Errorf("x: %w", context.Canceled), 502, 503},
		{fmt.Errorf("x: %w", meshcache.ErrLoadFailed), 500, 502},
		{errors.New("other"), 502, 502},
		{errors.New("other"), 500, 500},
	} {
		w := httptest.NewRecorder()
		writeFailure(w, tc.err, tc.fallback)
		if w.Code != tc.code {
			t.Errorf("writeFailure(%v, %d) = %d, want %d", tc.err, tc.fallback, w.Code, tc.code)
		}
	}
	w := httptest.NewRecorder()
	writeFailure(w, partial, 500)
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(body.Unacked, []string{"n2", "n3"}) || body.Error == "" {
		t.Errorf("partial write body = %+v, want the error and unacked [n2 n3]", body)
	}
}
