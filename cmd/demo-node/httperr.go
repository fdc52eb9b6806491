package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/meshcache/meshcache"
)

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error   string   `json:"error"`
	Unacked []string `json:"unacked,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// writeFailure answers a failed library call: 503 with the unacknowledged
// members for a partial write, else the status statusOf picks, with
// fallback for errors it does not know.
func writeFailure(w http.ResponseWriter, err error, fallback int) {
	var ie *meshcache.InvalidateError
	if errors.As(err, &ie) {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error(), Unacked: ie.Unacked})
		return
	}
	writeError(w, statusOf(err, fallback), err.Error())
}

// statusOf maps a library error to an HTTP status.
func statusOf(err error, fallback int) int {
	switch {
	case errors.Is(err, errOriginDown) || strings.Contains(err.Error(), errOriginDown.Error()):
		// The origin is down (-origin DIR/.down), here or at the key's
		// owner, whose error arrives as text: unavailable, not a bad
		// answer.
		return http.StatusServiceUnavailable
	case errors.Is(err, meshcache.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, meshcache.ErrEmptyKey), errors.Is(err, meshcache.ErrKeyTooLong),
		errors.Is(err, meshcache.ErrInvalidTag), errors.Is(err, meshcache.ErrInvalidTTL),
		errors.Is(err, meshcache.ErrInvalidName):
		return http.StatusBadRequest
	case errors.Is(err, meshcache.ErrClosed), errors.Is(err, meshcache.ErrPartialInvalidation),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	case errors.Is(err, meshcache.ErrLoadFailed), errors.Is(err, meshcache.ErrLoaderPanic):
		return http.StatusBadGateway
	}
	return fallback
}
