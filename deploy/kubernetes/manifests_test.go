package kubernetes_test

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meshcache/meshcache"
)

// The manifests are checked against demo-node's source, as far as this
// machine allows without a cluster or a container engine: every YAML
// document parses; every flag in the container's args is one of
// demo-node's and its values agree with the container ports, the Services,
// the probes, the Secret mounts and the Dockerfile; the termination grace
// period covers demo-node's shutdown.

const (
	repoRoot = "../.."
	demoDir  = repoRoot + "/cmd/demo-node"
)

// manifests are the parsed documents of this directory's YAML files.
type manifests struct {
	kustomization kustomization
	statefulSet   statefulSet
	services      []service
	pdbs          []podDisruptionBudget
	netpols       []networkPolicy
	kinds         []string // every document's kind, in file order
}

type meta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type header struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
}

type kustomization struct {
	Resources []string `yaml:"resources"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// intOrString is a Kubernetes IntOrString: a port number or name.
type intOrString struct{ value string }

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a name", n.Line)
	}
	v.value = n.Value
	return nil
}

type service struct {
	Metadata meta `yaml:"metadata"`
	Spec     struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
			Protocol   string      `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type statefulSet struct {
	Metadata meta `yaml:"metadata"`
	Spec     struct {
		ServiceName string        `yaml:"serviceName"`
		Replicas    *int          `yaml:"replicas"`
		Selector    labelSelector `yaml:"selector"`
		Template    struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64          `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               securityContext `yaml:"securityContext"`
	Containers                    []container     `yaml:"containers"`
	Volumes                       []volume        `yaml:"volumes"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports          []containerPort `yaml:"ports"`
	StartupProbe   *probe          `yaml:"startupProbe"`
	ReadinessProbe *probe          `yaml:"readinessProbe"`
	LivenessProbe  *probe          `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int64 `yaml:"seconds"`
			} `yaml:"sleep"`
			Exec    any `yaml:"exec"`
			HTTPGet any `yaml:"httpGet"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	SecurityContext securityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName string      `yaml:"secretName"`
		Items      []keyToPath `yaml:"items"`
	} `yaml:"secret"`
	ConfigMap *struct {
		Name  string      `yaml:"name"`
		Items []keyToPath `yaml:"items"`
	} `yaml:"configMap"`
	EmptyDir any `yaml:"emptyDir"`
}

type podDisruptionBudget struct {
	Metadata meta `yaml:"metadata"`
	Spec     struct {
		Selector       labelSelector `yaml:"selector"`
		MaxUnavailable *intOrString  `yaml:"maxUnavailable"`
		MinAvailable   *intOrString  `yaml:"minAvailable"`
	} `yaml:"spec"`
}

type networkPolicy struct {
	Metadata meta `yaml:"metadata"`
	Spec     struct {
		PodSelector labelSelector `yaml:"podSelector"`
		Ingress     []struct {
			From  []any `yaml:"from"`
			Ports []struct {
				Port     intOrString `yaml:"port"`
				Protocol string      `yaml:"protocol"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

// loadManifests parses every YAML document of every .yaml file here.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{}
	statefulSets := 0
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for i := 0; ; i++ {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", file, i, err)
			}
			var h header
			if err := doc.Decode(&h); err != nil {
				t.Fatalf("%s: document %d: %v", file, i, err)
			}
			where := fmt.Sprintf("%s: %s %q", file, h.Kind, h.Metadata.Name)
			if h.APIVersion == "" || h.Kind == "" {
				t.Errorf("%s: document %d has no apiVersion or kind", file, i)
				continue
			}
			if h.Kind != "Kustomization" && h.Metadata.Name == "" {
				t.Errorf("%s: no metadata.name", where)
			}
			m.kinds = append(m.kinds, h.Kind)
			decode := func(v any) {
				if err := doc.Decode(v); err != nil {
					t.Fatalf("%s: %v", where, err)
				}
			}
			switch h.Kind {
			case "Kustomization":
				decode(&m.kustomization)
			case "StatefulSet":
				statefulSets++
				decode(&m.statefulSet)
			case "Service":
				var s service
				decode(&s)
				m.services = append(m.services, s)
			case "PodDisruptionBudget":
				var p podDisruptionBudget
				decode(&p)
				m.pdbs = append(m.pdbs, p)
			case "NetworkPolicy":
				var n networkPolicy
				decode(&n)
				m.netpols = append(m.netpols, n)
			case "ConfigMap":
			default:
				t.Errorf("%s: a kind this test does not check", where)
			}
		}
		f.Close()
	}
	if statefulSets != 1 {
		t.Fatalf("%d StatefulSets; want 1", statefulSets)
	}
	if n := len(m.statefulSet.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("StatefulSet: %d containers; want 1 (demo-node)", n)
	}
	return m
}

func (m *manifests) pod() *podSpec { return &m.statefulSet.Spec.Template.Spec }

func (m *manifests) container() *container { return &m.pod().Containers[0] }

// demoFlag is one of demo-node's flags.
type demoFlag struct {
	isBool bool
}

// demoFlags returns demo-node's flags, read from the flag definitions in
// its source: calls such as fs.StringVar(&o.x, "name", ...) or
// fs.String("name", ...).
func demoFlags(t *testing.T) map[string]demoFlag {
	t.Helper()
	// The index of the name argument, by flag.FlagSet method.
	nameArg := map[string]int{
		"String": 0, "Bool": 0, "Int": 0, "Int64": 0, "Uint": 0, "Uint64": 0,
		"Float64": 0, "Duration": 0, "Func": 0, "BoolFunc": 0,
		"StringVar": 1, "BoolVar": 1, "IntVar": 1, "Int64Var": 1, "UintVar": 1,
		"Uint64Var": 1, "Float64Var": 1, "DurationVar": 1, "Var": 1, "TextVar": 1,
	}
	flags := make(map[string]demoFlag)
	for _, f := range parseDir(t, demoDir) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if _, ok := sel.X.(*ast.Ident); !ok {
				return true
			}
			i, ok := nameArg[sel.Sel.Name]
			if !ok || len(call.Args) <= i {
				return true
			}
			lit, ok := call.Args[i].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			name, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			isBool := sel.Sel.Name == "Bool" || sel.Sel.Name == "BoolVar" || sel.Sel.Name == "BoolFunc"
			flags[name] = demoFlag{isBool: isBool}
			return true
		})
	}
	// A refactor that hides the definitions from this parser must not pass
	// every flag by finding none.
	for _, name := range []string{"name", "http", "gossip", "rpc", "join"} {
		if _, ok := flags[name]; !ok {
			t.Fatalf("found no -%s flag in %s (found %d flags): update demoFlags", name, demoDir, len(flags))
		}
	}
	return flags
}

// parseDir parses the non-test Go files of dir.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// parseArgs parses args as demo-node's flag set would (-name=value,
// -name value, --name, a boolean without a value) and returns the value of
// each flag.
func parseArgs(t *testing.T, args []string, flags map[string]demoFlag) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			t.Errorf("args: %q: demo-node takes no arguments besides its flags", args[i:])
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		f, ok := flags[name]
		if !ok {
			t.Errorf("args: %q: demo-node has no flag -%s", a, name)
			continue
		}
		if !hasValue {
			if f.isBool {
				value = "true"
			} else if i+1 < len(args) {
				i++
				value = args[i]
			} else {
				t.Errorf("args: -%s needs a value", name)
			}
		}
		if _, dup := out[name]; dup {
			t.Errorf("args: -%s given twice", name)
		}
		out[name] = value
	}
	return out
}

// portOf returns the port of a host:port flag value, and its host.
func portOf(t *testing.T, flag, hostPort string) (host string, port int) {
	t.Helper()
	host, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("-%s=%s: %v", flag, hostPort, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		t.Fatalf("-%s=%s: want a fixed port (Services, probes and -join name it)", flag, hostPort)
	}
	return host, port
}

type portProto struct {
	port  int
	proto string
}

func (p portProto) String() string { return fmt.Sprintf("%d/%s", p.port, p.proto) }

func proto(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

// listenPorts returns the ports demo-node listens on with the container's
// args: HTTP, gossip (TCP and UDP) and RPC.
type listenPorts struct {
	http, gossip, rpc int
}

func (l listenPorts) set() []portProto {
	return []portProto{{l.http, "TCP"}, {l.gossip, "TCP"}, {l.gossip, "UDP"}, {l.rpc, "TCP"}}
}

func checkedPorts(t *testing.T, args map[string]string) listenPorts {
	t.Helper()
	for _, f := range []string{"http", "gossip", "rpc", "join"} {
		if args[f] == "" {
			t.Fatalf("args: no -%s (demo-node's default is for a laptop)", f)
		}
	}
	var l listenPorts
	var host string
	host, l.http = portOf(t, "http", args["http"])
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		t.Errorf("-http=%s: listen on every interface (0.0.0.0), for the kubelet's probes and kubectl port-forward", args["http"])
	}
	for _, f := range []string{"gossip", "rpc"} {
		h, port := portOf(t, f, args[f])
		if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			t.Errorf("-%s=%s: a loopback address is out of the other replicas' reach", f, args[f])
		}
		if f == "gossip" {
			l.gossip = port
		} else {
			l.rpc = port
		}
	}
	if l.gossip == l.rpc || l.http == l.gossip || l.http == l.rpc {
		t.Errorf("ports http %d, gossip %d, rpc %d: want three different ports", l.http, l.gossip, l.rpc)
	}
	return l
}

// resolvePort returns the container port that a Service's targetPort or a
// probe's port names (a port name or number; "" means def).
func resolvePort(c *container, target intOrString, def int, protocol string) (containerPort, bool) {
	for _, p := range c.Ports {
		if proto(p.Protocol) != proto(protocol) {
			continue
		}
		switch {
		case target.value == "" && p.ContainerPort == def,
			target.value != "" && (p.Name == target.value || strconv.Itoa(p.ContainerPort) == target.value):
			return p, true
		}
	}
	return containerPort{}, false
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	m := loadManifests(t)
	files, _ := filepath.Glob("*.yaml")
	var want []string
	for _, f := range files {
		if f != "kustomization.yaml" {
			want = append(want, f)
		}
	}
	got := slices.Sorted(slices.Values(m.kustomization.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %v; want the other manifests, %v", got, want)
	}
}

func TestFlagsArePortsAndServices(t *testing.T) {
	m := loadManifests(t)
	c := m.container()
	if len(c.Command) > 0 {
		t.Errorf("command %q: leave it to the image's ENTRYPOINT (demo-node)", c.Command)
	}
	args := parseArgs(t, c.Args, demoFlags(t))

	// Every $(VAR) in the args must be defined in env: Kubernetes leaves an
	// undefined reference as it is.
	env := make(map[string]bool)
	for _, e := range c.Env {
		env[e.Name] = true
	}
	for _, a := range c.Args {
		for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
			if !env[ref[1]] {
				t.Errorf("args: %q refers to $(%s), which env does not define", a, ref[1])
			}
		}
	}
	if !strings.Contains(args["name"], "$(") || !env["POD_NAME"] {
		t.Errorf("-name=%q: want the pod's name ($(POD_NAME) from the downward API): stable and unique", args["name"])
	}

	l := checkedPorts(t, args)
	var got []portProto
	names := make(map[string]bool)
	for _, p := range c.Ports {
		got = append(got, portProto{p.ContainerPort, proto(p.Protocol)})
		if p.Name == "" || names[p.Name] {
			t.Errorf("container port %d/%s: want a unique name", p.ContainerPort, proto(p.Protocol))
		}
		names[p.Name] = true
	}
	want := l.set()
	if !sameSet(got, want) {
		t.Errorf("containerPorts %v; the flags listen on %v (http, gossip TCP and UDP, rpc)", got, want)
	}

	// The Services: the headless one for gossip discovery and the peers'
	// ports, another for the HTTP API.
	var headless *service
	httpServed := false
	podLabels := m.statefulSet.Spec.Template.Metadata.Labels
	for i := range m.services {
		s := &m.services[i]
		if !matches(s.Spec.Selector, podLabels) {
			t.Errorf("Service %s: selector %v does not select the pods (%v)", s.Metadata.Name, s.Spec.Selector, podLabels)
		}
		for _, p := range s.Spec.Ports {
			cp, ok := resolvePort(c, p.TargetPort, p.Port, p.Protocol)
			if !ok {
				t.Errorf("Service %s: port %s (target %q) is no container port", s.Metadata.Name, p.Name, p.TargetPort.value)
				continue
			}
			if cp.ContainerPort == l.http {
				httpServed = true
			}
		}
		if s.Metadata.Name == m.statefulSet.Spec.ServiceName {
			headless = s
		}
	}
	if !httpServed {
		t.Errorf("no Service exposes the HTTP port %d", l.http)
	}
	if headless == nil {
		t.Fatalf("no Service named %q, the StatefulSet's serviceName", m.statefulSet.Spec.ServiceName)
	}
	if headless.Spec.ClusterIP != "None" {
		t.Errorf("Service %s: clusterIP %q; want None (headless: its name resolves to every pod)", headless.Metadata.Name, headless.Spec.ClusterIP)
	}
	if !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: publishNotReadyAddresses must be true: a pod joins before it is ready", headless.Metadata.Name)
	}
	var peerPorts []portProto
	for _, p := range headless.Spec.Ports {
		peerPorts = append(peerPorts, portProto{p.Port, proto(p.Protocol)})
	}
	for _, p := range want[1:] {
		if !slices.Contains(peerPorts, p) {
			t.Errorf("Service %s: ports %v lack %v (the peers dial the pods at the flags' ports)", headless.Metadata.Name, peerPorts, p)
		}
	}

	// -join names the headless Service at the gossip port.
	joined := false
	for _, seed := range strings.Split(args["join"], ",") {
		host, port := portOf(t, "join", strings.TrimSpace(seed))
		if first, _, _ := strings.Cut(host, "."); first == headless.Metadata.Name {
			joined = true
			if port != l.gossip {
				t.Errorf("-join=%s: port %d; the gossip port is %d", args["join"], port, l.gossip)
			}
		}
	}
	if !joined {
		t.Errorf("-join=%s: want the headless Service's name, %s:%d", args["join"], headless.Metadata.Name, l.gossip)
	}

	// The other objects select the same pods.
	if !matches(m.statefulSet.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("StatefulSet: selector %v does not select its template's labels %v", m.statefulSet.Spec.Selector.MatchLabels, podLabels)
	}
	if len(m.pdbs) == 0 {
		t.Error("no PodDisruptionBudget")
	}
	for _, p := range m.pdbs {
		if !matches(p.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("PodDisruptionBudget %s: selector %v does not select the pods", p.Metadata.Name, p.Spec.Selector.MatchLabels)
		}
		if (p.Spec.MaxUnavailable == nil) == (p.Spec.MinAvailable == nil) {
			t.Errorf("PodDisruptionBudget %s: want one of maxUnavailable and minAvailable", p.Metadata.Name)
		}
	}
	for _, n := range m.netpols {
		if !matches(n.Spec.PodSelector.MatchLabels, podLabels) {
			t.Errorf("NetworkPolicy %s: podSelector %v does not select the pods", n.Metadata.Name, n.Spec.PodSelector.MatchLabels)
		}
		var open []portProto
		for _, rule := range n.Spec.Ingress {
			for _, p := range rule.Ports {
				if cp, ok := resolvePort(c, p.Port, 0, p.Protocol); ok {
					open = append(open, portProto{cp.ContainerPort, proto(p.Protocol)})
				}
			}
		}
		for _, p := range want {
			if !slices.Contains(open, p) {
				t.Errorf("NetworkPolicy %s: no ingress rule opens %v", n.Metadata.Name, p)
			}
		}
	}
}

func sameSet(a, b []portProto) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return len(a) == len(b)
}

func TestProbesAreDemoNodeEndpoints(t *testing.T) {
	m := loadManifests(t)
	c := m.container()
	l := checkedPorts(t, parseArgs(t, c.Args, demoFlags(t)))
	served := servedPaths(t)
	for _, p := range []struct {
		name  string
		probe *probe
		path  string // "": any path demo-node serves
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"}, // Node.IsReady
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"startupProbe", c.StartupProbe, ""},
	} {
		if p.probe == nil {
			if p.path != "" {
				t.Errorf("no %s", p.name)
			}
			continue
		}
		g := p.probe.HTTPGet
		if g == nil {
			t.Errorf("%s: want an httpGet probe", p.name)
			continue
		}
		if p.path != "" && g.Path != p.path {
			t.Errorf("%s: path %q; want %q", p.name, g.Path, p.path)
		}
		if !served[g.Path] {
			t.Errorf("%s: demo-node does not serve %q", p.name, g.Path)
		}
		if cp, ok := resolvePort(c, g.Port, 0, "TCP"); !ok || cp.ContainerPort != l.http {
			t.Errorf("%s: port %q; want the -http port, %d", p.name, g.Port.value, l.http)
		}
	}
}

// servedPaths returns the paths in demo-node's source that look like its
// HTTP routes: string literals "/path" or "GET /path".
func servedPaths(t *testing.T) map[string]bool {
	t.Helper()
	paths := make(map[string]bool)
	for _, f := range parseDir(t, demoDir) {
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			s = strings.TrimPrefix(s, "GET ")
			if strings.HasPrefix(s, "/") && !strings.ContainsAny(s, " {}") {
				paths[s] = true
			}
			return true
		})
	}
	return paths
}

func TestGracefulShutdownFitsTheGracePeriod(t *testing.T) {
	m := loadManifests(t)
	c := m.container()
	grace := m.pod().TerminationGracePeriodSeconds
	if grace == nil {
		t.Fatal("terminationGracePeriodSeconds: set it explicitly, from demo-node's shutdown")
	}
	pre := c.Lifecycle.PreStop
	if pre == nil {
		t.Fatal("no preStop hook: the pod would stop accepting connections before the endpoints drop it")
	}
	var preStop time.Duration
	if pre.Sleep != nil {
		preStop = time.Duration(pre.Sleep.Seconds) * time.Second
	} else {
		t.Errorf("preStop: want a sleep action (the image has no shell)")
	}
	if preStop <= 0 {
		t.Errorf("preStop sleeps %v; want a few seconds", preStop)
	}

	// On SIGTERM demo-node drains HTTP (shutdownTimeout), then Node.Close
	// hands over (HandOverTimeout, which demo-node leaves at its default)
	// and leaves (leaveTimeout).
	shutdown := durationConst(t, demoDir, "shutdownTimeout")
	leave := durationConst(t, repoRoot, "leaveTimeout")
	handOver := meshcache.DefaultHandOverTimeout
	for _, f := range parseDir(t, demoDir) {
		ast.Inspect(f, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && id.Name == "HandOverTimeout" {
				t.Errorf("demo-node sets Config.HandOverTimeout: budget it here instead of meshcache.DefaultHandOverTimeout")
				return false
			}
			return true
		})
	}
	need := preStop + shutdown + handOver + leave
	if got := time.Duration(*grace) * time.Second; got <= need {
		t.Errorf("terminationGracePeriodSeconds %d: want more than preStop %v + HTTP shutdown %v + hand-over %v + leave %v = %v",
			*grace, preStop, shutdown, handOver, leave, need)
	}
}

// durationConst returns the value of the package-level constant name in
// the non-test Go files of dir: an expression such as 5 * time.Second.
func durationConst(t *testing.T, dir, name string) time.Duration {
	t.Helper()
	for _, f := range parseDir(t, dir) {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if id.Name != name || i >= len(vs.Values) {
						continue
					}
					d, err := evalDuration(vs.Values[i])
					if err != nil {
						t.Fatalf("%s: const %s: %v", dir, name, err)
					}
					return d
				}
			}
		}
	}
	t.Fatalf("no const %s in %s: the grace period check needs it (update this test)", name, dir)
	return 0
}

func evalDuration(e ast.Expr) (time.Duration, error) {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return evalDuration(e.X)
	case *ast.BasicLit:
		if e.Kind == token.INT {
			n, err := strconv.ParseInt(e.Value, 0, 64)
			return time.Duration(n), err
		}
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "time" {
			if d, ok := map[string]time.Duration{
				"Nanosecond": time.Nanosecond, "Microsecond": time.Microsecond, "Millisecond": time.Millisecond,
				"Second": time.Second, "Minute": time.Minute, "Hour": time.Hour,
			}[e.Sel.Name]; ok {
				return d, nil
			}
		}
	case *ast.BinaryExpr:
		if e.Op == token.MUL {
			a, err := evalDuration(e.X)
			if err != nil {
				return 0, err
			}
			b, err := evalDuration(e.Y)
			return a * b, err
		}
	}
	return 0, fmt.Errorf("cannot evaluate %T", e)
}

func TestSecretsAndSecurity(t *testing.T) {
	m := loadManifests(t)
	pod, c := m.pod(), m.container()
	args := parseArgs(t, c.Args, demoFlags(t))

	volumes := make(map[string]volume)
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	// mountOf returns the volume mounted at the longest prefix of p, and
	// p's path inside it.
	mountOf := func(p string) (volume, string, bool, bool) {
		best, rel, ro := "", "", false
		for _, vm := range c.VolumeMounts {
			if r, err := filepath.Rel(vm.MountPath, p); err == nil && !strings.HasPrefix(r, "..") && len(vm.MountPath) > len(best) {
				best, rel, ro = vm.Name, r, vm.ReadOnly
			}
		}
		v, ok := volumes[best]
		return v, rel, ro, ok
	}
	for _, f := range []string{"secret-key-file", "tls-cert", "tls-key", "tls-ca"} {
		p := args[f]
		if p == "" {
			t.Errorf("args: no -%s: the gossip key and the TLS material come from Secrets", f)
			continue
		}
		v, rel, ro, ok := mountOf(p)
		if !ok || v.Secret == nil {
			t.Errorf("-%s=%s: not in a Secret volume", f, p)
			continue
		}
		if !ro {
			t.Errorf("-%s=%s: mount the Secret read-only", f, p)
		}
		if len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(k keyToPath) bool { return k.Path == rel }) {
			t.Errorf("-%s=%s: Secret %s's items %v put no file at %s", f, p, v.Secret.SecretName, v.Secret.Items, rel)
		}
	}
	// -origin must be a directory: a volume is mounted at it or under it.
	if o := args["origin"]; o != "" {
		found := false
		for _, vm := range c.VolumeMounts {
			if r, err := filepath.Rel(o, vm.MountPath); err == nil && !strings.HasPrefix(r, "..") {
				found = true
			}
		}
		if !found {
			t.Errorf("-origin=%s: no volume at or under it (the root file system is read-only)", o)
		}
	}

	isTrue := func(b ...*bool) bool {
		for _, b := range b {
			if b != nil {
				return *b
			}
		}
		return false
	}
	if !isTrue(c.SecurityContext.RunAsNonRoot, pod.SecurityContext.RunAsNonRoot) {
		t.Error("securityContext: want runAsNonRoot: true")
	}
	if !isTrue(c.SecurityContext.ReadOnlyRootFilesystem) {
		t.Error("container securityContext: want readOnlyRootFilesystem: true")
	}
	if e := c.SecurityContext.AllowPrivilegeEscalation; e == nil || *e {
		t.Error("container securityContext: want allowPrivilegeEscalation: false")
	}
	uid := c.SecurityContext.RunAsUser
	if uid == nil {
		uid = pod.SecurityContext.RunAsUser
	}
	if uid == nil || *uid == 0 {
		t.Errorf("securityContext: want a non-zero runAsUser")
	} else if d := parseDockerfile(t); d.uid > 0 && d.uid != *uid {
		t.Errorf("runAsUser %d; the image's USER is %d", *uid, d.uid)
	}
	if r := m.statefulSet.Spec.Replicas; r == nil || *r < 3 {
		t.Errorf("replicas: want 3 or more (a majority survives one replica's loss)")
	}
}

// dockerfile is what the test reads of the Dockerfile.
type dockerfile struct {
	stages     []string // the FROM images, ${ARG}s expanded
	buildRuns  []string // the RUN commands before the last stage
	uid        int64    // the last stage's USER
	user       string
	exposed    []portProto
	entrypoint string
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") { // a comment inside a continuation
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	d.uid = -1
	argDefaults := make(map[string]string)
	var runs []string
	for _, line := range lines {
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "ARG":
			if k, v, ok := strings.Cut(rest, "="); ok {
				argDefaults[k] = v
			}
		case "FROM":
			fields := strings.Fields(rest)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				fields = fields[1:]
			}
			if len(fields) == 0 {
				t.Fatalf("Dockerfile: %q", line)
			}
			image := os.Expand(fields[0], func(k string) string { return argDefaults[k] })
			d.stages = append(d.stages, image)
			d.buildRuns = append(d.buildRuns, runs...)
			runs = nil
			d.user, d.uid, d.exposed = "", -1, nil
		case "RUN":
			runs = append(runs, rest)
		case "USER":
			d.user = rest
			uid, _, _ := strings.Cut(rest, ":")
			if n, err := strconv.ParseInt(uid, 10, 64); err == nil {
				d.uid = n
			}
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				num, pr, _ := strings.Cut(p, "/")
				n, err := strconv.Atoi(num)
				if err != nil {
					t.Fatalf("Dockerfile: EXPOSE %q", p)
				}
				d.exposed = append(d.exposed, portProto{n, proto(strings.ToUpper(pr))})
			}
		case "ENTRYPOINT":
			var ep []string
			if err := yaml.Unmarshal([]byte(rest), &ep); err != nil || len(ep) == 0 {
				t.Fatalf("Dockerfile: ENTRYPOINT %s: want the exec form, [\"...\"]", rest)
			}
			d.entrypoint = ep[0]
		}
	}
	return d
}

func TestDockerfile(t *testing.T) {
	d := parseDockerfile(t)
	if len(d.stages) < 2 {
		t.Fatalf("Dockerfile: %d stages; want a build stage and a final one", len(d.stages))
	}

	// The build stage's Go is go.mod's release.
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mm := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if mm == nil {
		t.Fatal("go.mod: no go directive")
	}
	goRelease := string(mm[1])
	image, tag, _ := strings.Cut(d.stages[0], ":")
	if image != "golang" || !(tag == goRelease || strings.HasPrefix(tag, goRelease+".") || strings.HasPrefix(tag, goRelease+"-")) {
		t.Errorf("Dockerfile: build stage FROM %s; want golang:%s (go.mod's go %s)", d.stages[0], goRelease, goRelease)
	}

	build := strings.Join(d.buildRuns, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "go build", "./cmd/demo-node"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile: the build stage's RUN lacks %q (a static binary of demo-node)", want)
		}
	}
	if d.user == "" || d.uid <= 0 {
		t.Errorf("Dockerfile: final stage USER %q; want a numeric non-root uid (runAsNonRoot checks it)", d.user)
	}
	if path.Base(d.entrypoint) != "demo-node" {
		t.Errorf("Dockerfile: ENTRYPOINT %q; want demo-node", d.entrypoint)
	}

	m := loadManifests(t)
	l := checkedPorts(t, parseArgs(t, m.container().Args, demoFlags(t)))
	if !sameSet(d.exposed, l.set()) {
		t.Errorf("Dockerfile: EXPOSE %v; the manifests' flags listen on %v", d.exposed, l.set())
	}
}

func TestParseArgs(t *testing.T) {
	flags := map[string]demoFlag{"a": {}, "b": {isBool: true}, "c": {}}
	got := parseArgs(t, []string{"-a=1", "--b", "-c", "x y"}, flags)
	want := map[string]string{"a": "1", "b": "true", "c": "x y"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseArgs = %v; want %v", got, want)
	}
	if d, err := evalDuration(mustExpr(t, "5 * time.Second")); err != nil || d != 5*time.Second {
		t.Errorf("evalDuration(5 * time.Second) = %v, %v", d, err)
	}
}

func mustExpr(t *testing.T, s string) ast.Expr {
	t.Helper()
	e, err := parser.ParseExpr(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
