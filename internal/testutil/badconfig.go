package testutil

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollcall-edge/rollcall/internal/yamlx"
)

// BadConfigs runs a bad-config corpus: every testdata/*.bad.yml of the calling package
// must have an entry in want (file name → the exact error lines, in order), load must
// refuse each file with exactly those lines (which give the line and column where the
// file has them), and every error must be a *yamlx.Error naming the file.
func BadConfigs(t *testing.T, want map[string][]string, load func(path string) error) {
	t.Helper()
	files, _ := filepath.Glob("testdata/*.bad.yml")
	if len(files) != len(want) {
		t.Errorf("%d bad configs in testdata, %d expected message lists: every file needs one", len(files), len(want))
	}
	for file, msgs := range want {
		t.Run(file, func(t *testing.T) {
			err := load("testdata/" + file)
			if err == nil {
				t.Fatal("accepted")
			}
			if got, w := err.Error(), strings.Join(msgs, "\n"); got != w {
				t.Fatalf("got\n%s\nwant\n%s", got, w)
			}
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			for _, e := range errs {
				var ye *yamlx.Error
				if !errors.As(e, &ye) || ye.File != "testdata/"+file {
					t.Errorf("%v: not a *yamlx.Error naming the file", e)
				}
			}
		})
	}
}
