package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A netLab is a private network for the nodes of one test, made of network
// namespaces the test creates and removes (nothing changes outside them):
//
//   - a hub namespace holding three bridges: api (address apiHub, from
//     which the test reaches every node's HTTP API), cluster, and cut;
//   - one namespace per node, linked to the hub by two veth pairs: api0
//     (10.231.0.i+1, on the api bridge) for the HTTP API, and clu0
//     (10.232.0.i+1, on the cluster bridge) for gossip and the peer
//     transport.
//
// Cutting nodes off moves the hub end of their clu0 link to the cut bridge:
// from then on their gossip and RPC packets to the others, and the others'
// to them, are dropped silently, as in a real partition (no error, no
// reset), while the nodes cut off together still reach each other and
// every HTTP API stays reachable. Healing moves the links back.
//
// The namespaces' names carry the test process's pid, so that runs do not
// collide and the leftovers of a run that died without its cleanups (a
// panic on -timeout) can be recognized and removed by the next one.
type netLab struct {
	t      *testing.T
	ip     string   // path of iproute2's ip
	hub    string   // name of the hub namespace
	nodeNS []string // name of node i's namespace
	hubNS  *os.File // the hub namespace, for dial
}

// Addresses inside a netLab. They exist only in its namespaces.
const (
	apiNet     = "10.231.0." // node i has apiNet + (i+1)
	apiHub     = apiNet + "254"
	clusterNet = "10.232.0." // node i has clusterNet + (i+1)
	// labNodes bounds the nodes of a lab (hub link names stay short).
	labNodes = 16
	// netnsPrefix starts the name of every namespace a netLab creates.
	netnsPrefix = "mcpart"
	// netnsDir is where ip netns keeps its named namespaces.
	netnsDir = "/var/run/netns"
)

// labSeq numbers the labs of this process.
var labSeq atomic.Int64

// ipPath returns the path of iproute2's ip, or "" when it is missing (it
// sits in /usr/sbin, which a user's PATH may lack).
func ipPath() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// newNetLab creates the namespaces and links for size nodes, and removes
// them when t ends (after the nodes, whose cleanups run first if they are
// registered later). It skips t when the test cannot create namespaces:
// not root, no ip command, or a kernel or container that refuses.
func newNetLab(t *testing.T, size int) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the partition tests need root to create network namespaces (ip netns); run them as root, as .ci/run does")
	}
	ip := ipPath()
	if ip == "" {
		t.Skip("the partition tests need iproute2's ip command to create network namespaces; install iproute2 (.ci/run does)")
	}
	if size < 1 || size > labNodes {
		t.Fatalf("newNetLab(%d): want 1 to %d nodes", size, labNodes)
	}
	removeStaleNamespaces(t, ip)
	prefix := fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), labSeq.Add(1))
	l := &netLab{t: t, ip: ip, hub: prefix + "-hub"}
	t.Cleanup(l.remove)

	// The first namespace decides whether this machine allows them at all.
	if out, err := l.run("netns", "add", l.hub); err != nil {
		t.Skipf("cannot create a network namespace here, the partition tests need one (root with CAP_SYS_ADMIN and CAP_NET_ADMIN): %v: %s", err, out)
	}
	l.must("-n", l.hub, "link", "set", "lo", "up")
	for _, br := range []string{"api", "cluster", "cut"} {
		l.must("-n", l.hub, "link", "add", br, "type", "bridge")
		l.must("-n", l.hub, "link", "set", br, "up")
	}
	l.must("-n", l.hub, "addr", "add", apiHub+"/24", "dev", "api")
	for i := range size {
		ns := fmt.Sprintf("%s-n%d", prefix, i)
		l.must("netns", "add", ns)
		l.nodeNS = append(l.nodeNS, ns)
		l.must("-n", ns, "link", "set", "lo", "up")
		for _, link := range []struct{ hubEnd, bridge, nodeEnd, addr string }{
			{fmt.Sprintf("a%d", i), "api", "api0", l.apiAddr(i)},
			{fmt.Sprintf("c%d", i), "cluster", "clu0", l.clusterAddr(i)},
		} {
			l.must("-n", l.hub, "link", "add", link.hubEnd, "type", "veth", "peer", "name", link.nodeEnd, "netns", ns)
			l.must("-n", l.hub, "link", "set", link.hubEnd, "master", link.bridge, "up")
			l.must("-n", ns, "addr", "add", link.addr+"/24", "dev", link.nodeEnd)
			l.must("-n", ns, "link", "set", link.nodeEnd, "up")
		}
	}
	f, err := os.Open(filepath.Join(netnsDir, l.hub))
	if err != nil {
		t.Fatalf("open the hub namespace: %v", err)
	}
	l.hubNS = f
	return l
}

// apiAddr returns node i's address on the api bridge.
func (l *netLab) apiAddr(i int) string { return apiNet + strconv.Itoa(i+1) }

// clusterAddr returns node i's address on the cluster bridge.
func (l *netLab) clusterAddr(i int) string { return clusterNet + strconv.Itoa(i+1) }

// wrap returns the command prefix that runs a program in node i's
// namespace. ip netns exec execs the program, so its pid is the node's.
func (l *netLab) wrap(i int) []string { return []string{l.ip, "netns", "exec", l.nodeNS[i]} }

// flags returns the listen-address flags of node i: the HTTP API on the
// api bridge, gossip and the peer transport on the cluster bridge, each on
// a port the node picks.
func (l *netLab) flags(i int) []string {
	return []string{
		"-http", l.apiAddr(i) + ":0",
		"-gossip", l.clusterAddr(i) + ":0",
		"-rpc", l.clusterAddr(i) + ":0",
	}
}

// cut cuts off the nodes idx from the others (not from each other).
func (l *netLab) cut(idx ...int) {
	l.t.Helper()
	for _, i := range idx {
		l.must("-n", l.hub, "link", "set", fmt.Sprintf("c%d", i), "master", "cut")
	}
}

// heal puts the nodes idx back on the cluster bridge.
func (l *netLab) heal(idx ...int) {
	l.t.Helper()
	for _, i := range idx {
		l.must("-n", l.hub, "link", "set", fmt.Sprintf("c%d", i), "master", "cluster")
	}
}

// dial connects from inside the hub namespace, where every node's HTTP
// API is reachable: the DialContext of the test's HTTP transport.
//
// A socket belongs to the namespace of the thread that creates it, so the
// dial runs on a locked thread that enters the hub and then returns to its
// own namespace. That thread must survive: the nodes are started with a
// parent-death signal (orphanProof), which the kernel sends when the
// *thread* that started them ends, and the runtime ends a thread whose
// goroutine exits while locked. So the thread is unlocked again, and is
// left locked (to die, with the risk above) only if it cannot return.
func (l *netLab) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("dial %s in the hub namespace: %w", addr, err)
	}
	defer self.Close()
	if err := setns(l.hubNS); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("dial %s: enter the hub namespace: %w", addr, err)
	}
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, network, addr)
	if err := setns(self); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("dial %s: leave the hub namespace: %w", addr, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}

// setns moves the calling thread into the network namespace f.
func setns(f *os.File) error {
	err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
	runtime.KeepAlive(f)
	return os.NewSyscallError("setns", err)
}

// remove deletes the lab's namespaces; their links go with them. A
// namespace lives on while a process runs in it: the nodes must be gone.
func (l *netLab) remove() {
	if l.hubNS != nil {
		l.hubNS.Close()
	}
	for _, ns := range append(l.nodeNS, l.hub) {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if out, err := l.run("netns", "delete", ns); err != nil {
			l.t.Errorf("remove namespace %s: %v: %s", ns, err, out)
		}
	}
}

// run runs ip with args, bounded in time, and returns its output.
func (l *netLab) run(args ...string) (string, error) {
	return runIP(l.ip, args...)
}

// must runs ip with args and fails the test on error.
func (l *netLab) must(args ...string) {
	l.t.Helper()
	if out, err := l.run(args...); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// runIP runs ip with args for at most 10s and returns its output.
func runIP(ip string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// removeStaleNamespaces deletes the namespaces left by netLabs of test
// processes that no longer run (killed before their cleanups). Only names
// of this test's form, with a dead pid, are touched.
func removeStaleNamespaces(t *testing.T, ip string) {
	t.Helper()
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return // none yet
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), netnsPrefix)
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive, or not ours to judge
		}
		if out, err := runIP(ip, "netns", "delete", e.Name()); err != nil {
			t.Logf("remove the stale namespace %s: %v: %s", e.Name(), err, out)
		} else {
			t.Logf("removed the stale namespace %s (pid %d is gone)", e.Name(), pid)
		}
	}
}
