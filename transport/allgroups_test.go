package transport

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"testing"
)

// TestWriteAllGroupsRoundTrip: a write to every group (an empty Group) and
// CountHeld reach the handler as sent, alone, in a batch and as a gossip
// payload; L2Groups comes back in the response.
func TestWriteAllGroupsRoundTrip(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []WriteRequest
	)
	h := &fakeHandler{write: func(_ context.Context, req WriteRequest) (WriteResponse, error) {
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		if req.Group == "" {
			return WriteResponse{L2Groups: []string{"orders", "users\xff"}}, nil
		}
		return WriteResponse{Applied: 1}, nil
	}}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	reqs := []WriteRequest{
		{Op: OpInvalidateTags, Phase: PhaseServing, Tags: []string{"org:acme"}, Origin: "n1", ID: 7, View: 3},
		{Group: "g", Op: OpInvalidate, Phase: PhaseServing, Keys: []string{"k"}, CountHeld: true, ID: 8},
	}
	wantResps := []WriteResponse{{L2Groups: []string{"orders", "users\xff"}}, {Applied: 1}}
	for i, req := range reqs {
		got, err := c.Write(t.Context(), s.Addr(), req)
		if err != nil || !reflect.DeepEqual(got, wantResps[i]) {
			t.Errorf("Write(%+v) = %+v, %v, want %+v", req, got, err, wantResps[i])
		}
	}
	results, err := c.WriteBatch(t.Context(), s.Addr(), reqs)
	if err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	for i, r := range results {
		if r.Err != nil || !reflect.DeepEqual(r.WriteResponse, wantResps[i]) {
			t.Errorf("batch result %d = %+v, %v, want %+v", i, r.WriteResponse, r.Err, wantResps[i])
		}
	}
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	want := append(slices.Clone(reqs), reqs...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the handler saw\n%+v\nwant\n%+v", got, want)
	}
	for _, req := range reqs {
		b, err := EncodeWrite(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeWrite(b)
		if err != nil || !reflect.DeepEqual(back, req) {
			t.Errorf("DecodeWrite(EncodeWrite(%+v)) = %+v, %v", req, back, err)
		}
	}
}
