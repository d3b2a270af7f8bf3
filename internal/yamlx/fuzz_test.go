package yamlx

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecode: Decode never panics (a recovered panic is an internal error), every
// error is a *Error naming the file, and a document that decodes has a Doc.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("discovery: {serial: [ {name: bus1, baud: fast} ]}\n"))
	f.Add([]byte("on: true\ntags: &t [a, b]\ndiscovery:\n  serial:\n    - &b {baud: 1, every: 2s}\n    - <<: *b\n      name: y\n"))
	f.Add([]byte("&a [*a, *a]\n"))
	f.Add([]byte("a: 1\n---\nb: 2\n"))
	f.Add([]byte("? [a]\n: {meta: {k: [1]}}\n"))
	f.Add([]byte("tags:\n  - - - [[{a: [x]}]]\n"))          // nesting, block and flow (MaxDepth)
	f.Add([]byte("on: true\n&k ? on\n: false\n\"x\": 1\n")) // keys anchored, explicit, quoted (MaxMappingKeys)
	f.Add([]byte("---\non: true\n...\n---\n"))              // document markers
	f.Fuzz(func(t *testing.T, data []byte) {
		var c config
		doc, err := Decode("fuzz.yml", data, &c)
		if err == nil {
			if doc == nil {
				t.Fatal("no error and no Doc")
			}
			return
		}
		if strings.Contains(err.Error(), internalError) {
			t.Fatalf("panic: %v", err)
		}
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			var ye *Error
			if !errors.As(e, &ye) || ye.File != "fuzz.yml" {
				t.Fatalf("error %v is not a *Error naming the file", e)
			}
		}
	})
}
