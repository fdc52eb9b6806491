package peers

import (
	"context"
	"log/slog"
	"strings"
)

// logBridge is the io.Writer behind memberlist's *log.Logger. It maps
// memberlist's "[LEVEL] memberlist: ..." lines to slog levels and watches for
// refutes.
//
// Refute detection: memberlist refutes an accusation about the local node in
// suspectNode and deadNode (state.go in v0.7.0) and offers no hook for it;
// each refute logs exactly one warning whose message starts "memberlist:
// Refuting a suspect message" or "memberlist: Refuting a dead message". The
// bridge sees every line whatever the slog level, so it calls onRefute for
// those. It matches the start of the message only: the rest of the line
// carries peer names, which may contain the same words. The coupling to memberlist's log text
// is deliberate and guarded by TestCutOffOnRefute: if an upgrade changes the
// text, that test fails. memberlist writes these lines while holding its node
// lock, so onRefute must not block.
type logBridge struct {
	log      *slog.Logger
	onRefute func()
}

// refutePrefixes start the memberlist warnings that mean another member
// declared this node suspect or dead.
var refutePrefixes = [...]string{
	"memberlist: Refuting a suspect message",
	"memberlist: Refuting a dead message",
}

// Write handles one log line. It never fails.
func (b *logBridge) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level, msg := parseLogLine(line)
	if b.onRefute != nil && level == slog.LevelWarn {
		for _, p := range refutePrefixes {
			if strings.HasPrefix(msg, p) {
				b.onRefute()
				break
			}
		}
	}
	ctx := context.Background()
	if b.log.Enabled(ctx, level) {
		b.log.Log(ctx, level, msg)
	}
	return len(p), nil
}

// parseLogLine splits memberlist's level prefix off line. Lines without a
// known prefix are logged at Info.
func parseLogLine(line string) (slog.Level, string) {
	if !strings.HasPrefix(line, "[") {
		return slog.LevelInfo, line
	}
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return slog.LevelInfo, line
	}
	var level slog.Level
	switch line[1:end] {
	case "DEBUG", "TRACE":
		level = slog.LevelDebug
	case "INFO":
		level = slog.LevelInfo
	case "WARN", "WARNING":
		level = slog.LevelWarn
	case "ERR", "ERROR":
		level = slog.LevelError
	default:
		return slog.LevelInfo, line
	}
	return level, strings.TrimSpace(line[end+1:])
}
