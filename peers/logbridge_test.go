package peers

import (
	"bytes"
	"log"
	"log/slog"
	"strings"
	"testing"
)

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		line      string
		wantLevel slog.Level
		wantMsg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5", slog.LevelDebug, "memberlist: Stream connection from=1.2.3.4:5"},
		{"[INFO] memberlist: Marking b as failed", slog.LevelInfo, "memberlist: Marking b as failed"},
		{"[WARN] memberlist: Refuting a suspect message (from: a)", slog.LevelWarn, "memberlist: Refuting a suspect message (from: a)"},
		{"[ERR] memberlist: Failed to send gossip", slog.LevelError, "memberlist: Failed to send gossip"},
		{"[ERROR] x", slog.LevelError, "x"},
		{"Err: Could not set the deadline", slog.LevelInfo, "Err: Could not set the deadline"},
		{"[NOPE] x", slog.LevelInfo, "[NOPE] x"},
		{"[unterminated", slog.LevelInfo, "[unterminated"},
		{"", slog.LevelInfo, ""},
	}
	for _, tt := range tests {
		level, msg := parseLogLine(tt.line)
		if level != tt.wantLevel || msg != tt.wantMsg {
			t.Errorf("parseLogLine(%q) = %v, %q, want %v, %q", tt.line, level, msg, tt.wantLevel, tt.wantMsg)
		}
	}
}

func TestLogBridge(t *testing.T) {
	tests := []struct {
		line       string
		wantRefute bool
		wantLogged bool // at Info or above
	}{
		{"[WARN] memberlist: Refuting a suspect message (from: a)", true, true},
		{"[WARN] memberlist: Refuting a dead message (from: a)", true, true},
		{"[WARN] memberlist: Refuting an alive message for 'b' (127.0.0.1:1)", false, true},
		// A peer whose name contains the marker text.
		{"[WARN] memberlist: Was able to connect to Refuting a dead message (from: x) over TCP but UDP probes failed", false, true},
		{"[WARN] memberlist: Failed to send ack: Refuting a suspect message to 127.0.0.1:1", false, true},
		{"[DEBUG] memberlist: Refuting a dead message (from: a)", false, false},
		{"[DEBUG] memberlist: Stream connection", false, false},
		{"[ERR] memberlist: Push/Pull with b failed", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			var out bytes.Buffer
			refutes := 0
			b := &logBridge{
				log:      slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})),
				onRefute: func() { refutes++ },
			}
			// Through *log.Logger, as memberlist writes.
			log.New(b, "", 0).Print(tt.line)
			if got := refutes == 1; got != tt.wantRefute {
				t.Errorf("refutes = %d, want refute %v", refutes, tt.wantRefute)
			}
			if got := out.Len() > 0; got != tt.wantLogged {
				t.Errorf("logged %q, want logged %v", out.String(), tt.wantLogged)
			}
			if tt.wantLogged && strings.Contains(out.String(), "[WARN]") {
				t.Errorf("logged %q with the memberlist prefix left in", out.String())
			}
		})
	}
}
