package peers

import (
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/hashicorp/memberlist"
)

func join(name string, inc uint64) event {
	return event{kind: evJoin, name: name, inc: inc, addr: "127.0.0.1:1", meta: meta{Protocol: protocolVersion, RPCAddr: name + ":rpc", Boot: inc}}
}

func leave(name string, inc uint64) event { return event{kind: evLeave, name: name, inc: inc} }

func left(name string, inc uint64) event {
	return event{kind: evLeave, name: name, inc: inc, left: true}
}

func TestMemberViewCutOff(t *testing.T) {
	tests := []struct {
		name        string
		events      []event
		wantMembers []string
		wantCutOffs int
	}{
		{"joins", []event{join("self", 1), join("a", 2), join("b", 3)}, []string{"a", "b", "self"}, 0},
		{"restart with new boot", []event{join("self", 1), join("a", 2), leave("a", 2), join("a", 9)}, []string{"a", "self"}, 0},
		{"same process back", []event{join("self", 1), join("a", 2), leave("a", 2), join("a", 2)}, []string{"a", "self"}, 1},
		{"every peer lost then back", []event{join("self", 1), join("a", 2), join("b", 3), leave("a", 2), leave("b", 3), join("b", 3), join("a", 2)}, []string{"a", "b", "self"}, 2},
		{"left then same process back", []event{join("self", 1), join("a", 2), left("a", 2), join("a", 2)}, []string{"a", "self"}, 0},
		{"failed, back, then left", []event{join("self", 1), join("a", 2), leave("a", 2), join("a", 2), left("a", 2), join("a", 2)}, []string{"a", "self"}, 1},
		{"back twice counts twice", []event{join("self", 1), join("a", 2), leave("a", 2), join("a", 2), leave("a", 2), join("a", 2)}, []string{"a", "self"}, 2},
		{"self leaving is no failure", []event{join("self", 1), leave("self", 1), join("self", 1)}, []string{"self"}, 0},
		{"unknown leave ignored", []event{join("self", 1), leave("ghost", 1)}, []string{"self"}, 0},
		// A restart while the old process is still alive to memberlist.
		{"newer incarnation replaces", []event{join("self", 1), join("a", 2), join("a", 9), leave("a", 2)}, []string{"a", "self"}, 0},
		{"older incarnation ignored", []event{join("self", 1), join("a", 9), join("a", 2), leave("a", 2)}, []string{"a", "self"}, 0},
		{"old incarnation dies, new stays", []event{join("self", 1), join("a", 2), join("a", 9), leave("a", 2), leave("a", 9)}, []string{"self"}, 0},
		{"another process under our name", []event{join("self", 1), join("self", 7), leave("self", 7)}, []string{"self"}, 0},
		// A clock stepped back: the restarted process has the smaller
		// incarnation, and is the member once the old one is gone.
		{"older incarnation back when the newer goes", []event{join("self", 1), join("a", 9), join("a", 2), leave("a", 9)}, []string{"a", "self"}, 0},
		{"hidden incarnation gone first", []event{join("self", 1), join("a", 2), join("a", 9), leave("a", 2), leave("a", 9)}, []string{"self"}, 0},
		{"refute", []event{join("self", 1), {kind: evCutOff, reason: "r"}}, []string{"self"}, 1},
		{"incompatible join dropped", []event{join("self", 1), {kind: evJoin, name: "x", err: errors.New("bad")}}, []string{"self"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newMemberView("self", 1)
			cutOffs := 0
			for _, ev := range tt.events {
				if _, reason := v.apply(ev); reason != "" {
					cutOffs++
				}
			}
			if got := names(v.list()); !slices.Equal(got, tt.wantMembers) {
				t.Errorf("members = %v, want %v", got, tt.wantMembers)
			}
			if cutOffs != tt.wantCutOffs {
				t.Errorf("cut-offs = %d, want %d", cutOffs, tt.wantCutOffs)
			}
		})
	}
}

func TestMemberViewChanged(t *testing.T) {
	v := newMemberView("self", 1)
	steps := []struct {
		ev   event
		want bool
	}{
		{join("a", 1), true},
		{join("a", 1), false}, // same again
		{event{kind: evUpdate, name: "a", inc: 1, addr: "127.0.0.1:1", meta: meta{RPCAddr: "a:new"}}, true},
		{join("a", 5), true},   // a new incarnation
		{leave("a", 1), false}, // the old one
		{leave("a", 5), true},
		{leave("a", 5), false},
	}
	for i, s := range steps {
		if got, _ := v.apply(s.ev); got != s.want {
			t.Errorf("step %d: apply(%v %s) changed = %v, want %v", i, s.ev.kind, s.ev.name, got, s.want)
		}
	}
}

func TestMemberViewBoundsFailed(t *testing.T) {
	v := newMemberView("self", 1)
	for i := range maxFailed + 10 {
		name := string(rune('A'+i%26)) + string(rune(i))
		v.apply(join(name, uint64(i)))
		v.apply(leave(name, uint64(i)))
	}
	if len(v.failed) > maxFailed {
		t.Errorf("len(failed) = %d, want <= %d", len(v.failed), maxFailed)
	}
}

// TestNodeEventLeft: a NotifyLeave node counts as left only if its last
// metadata carried the leaving flag; memberlist's Node.State says alive
// whether the member left or failed.
func TestNodeEventLeft(t *testing.T) {
	c := &Cluster{s: &settings{Config: Config{Fingerprint: "fp"}}}
	m := meta{Protocol: protocolVersion, Fingerprint: "fp", Boot: 3}
	leaving := m
	leaving.Leaving = true
	tests := []struct {
		name string
		meta []byte
		want bool
	}{
		{"leaving flag", encodeMeta(leaving), true},
		{"no flag", encodeMeta(m), false},
		{"garbage", []byte("garbage"), false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &memberlist.Node{Name: "a", Addr: net.IPv4(127, 0, 0, 1), Port: 1, Meta: tt.meta}
			if got := c.nodeEvent(evLeave, n).left; got != tt.want {
				t.Errorf("nodeEvent(evLeave, meta %q).left = %v, want %v", tt.meta, got, tt.want)
			}
		})
	}
}

func TestEventQueueOrder(t *testing.T) {
	q := newEventQueue()
	for _, n := range []string{"a", "b", "c"} {
		q.push(event{name: n})
	}
	<-q.wake
	var got []string
	for _, ev := range q.take() {
		got = append(got, ev.name)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("take() = %v, want %v", got, want)
	}
	if rest := q.take(); len(rest) != 0 {
		t.Errorf("second take() = %v, want empty", rest)
	}
}
