// Package seedcorpus keeps the seed inputs of a fuzz test as files under
// testdata/fuzz, where plain `go test` runs them. It is for tests only.
package seedcorpus

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Check verifies that testdata/fuzz/<fuzzName> holds one file per seed
// (seed-00, seed-01, ...), each in go's corpus format, and reports a
// missing or stale one; with update set it rewrites them instead. rerun is
// the command that updates them, for the failure message.
func Check(t testing.TB, fuzzName string, seeds [][]byte, update bool, rerun string) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzzName)
	for i, seed := range seeds {
		path := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(seed)) + ")\n"
		if update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != content {
			t.Errorf("%s is missing or stale (err %v); run %s", path, err, rerun)
		}
	}
}
