package yamlx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// keys returns a block mapping of n keys at column 1 + indent.
func keys(n, indent int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%sk%d: v\n", strings.Repeat(" ", indent), i)
	}
	return b.String()
}

// TestShapeLimits: what checkShape refuses (before goccy/go-yaml parses it), where, and
// what it lets through (the limits themselves, and shapes that look alike).
func TestShapeLimits(t *testing.T) {
	type meta struct {
		Meta map[string]string `yaml:"meta"`
		List []any             `yaml:"list"`
	}
	nestFlow := func(n int) string { return "list: " + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + "\n" }
	nestBlock := func(n int) string { return "list:\n  " + strings.Repeat("- ", n-1) + "x\n" }
	flowKeys := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "k%d: v, ", i)
		}
		return "meta: {" + strings.TrimSuffix(b.String(), ", ") + "}\n"
	}
	tests := []struct {
		name, in string
		want     string // "" = no limit error
	}{
		{"256 keys", "meta:\n" + keys(256, 2), ""},
		{"257 keys", "meta:\n" + keys(257, 2), "f.yaml:258:3: more than 256 keys in one mapping (the limit; no rollcall file needs that many)"},
		{"257 keys at the top", keys(257, 0), "f.yaml:257:1: more than 256 keys in one mapping"},
		{"257 anchored keys", "meta:\n" + strings.ReplaceAll(keys(257, 2), "  k", "  &a k"), "f.yaml:258:3: more than 256 keys in one mapping"},
		{"257 explicit keys", "meta:\n" + strings.ReplaceAll(strings.ReplaceAll(keys(257, 2), "  k", "  ? k"), ": v", "\n  : v"),
			"f.yaml:514:3: more than 256 keys in one mapping"},
		{"257 keys after list entries", "list:\n  - a: 1\n" + keys(256, 4), "f.yaml:258:5: more than 256 keys in one mapping"},
		{"200 keys in each of 2 mappings", "list:\n  -\n" + keys(200, 4) + "  -\n" + keys(200, 4), ""},
		{"200 keys in each of 2 list items, compact", "list:\n  - k: v\n" + keys(199, 4) + "  - k: v\n" + keys(199, 4), ""},
		{"300 keys in a flow mapping", flowKeys(300), ""},
		{"1000 list items", "list:\n" + strings.Repeat("  - x\n", 1000), ""},
		{"depth 64 in flow", nestFlow(64), ""},
		{"depth 65 in flow", nestFlow(65), "f.yaml:1:70: nested more than 64 levels deep (the limit; a rollcall file nests at most 8)"},
		{"depth 64 in block", nestBlock(64), ""},
		{"depth 65 in block", nestBlock(65), "f.yaml:2:129: nested more than 64 levels deep"},
		{"8 document markers", "---\nmeta: {a: b}\n" + strings.Repeat("...\n", 7), ""},
		{"9 document markers", strings.Repeat("---\n", 9), "f.yaml:9:1: only one YAML document is allowed (this file has more than 8 document markers --- or ...)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m meta
			doc, err := Decode("f.yaml", []byte(tc.in), &m)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if doc != nil || err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("doc %v, error\n%v\nwant it to start with\n%s", doc != nil, err, tc.want)
			}
			var ye *Error
			if !errors.As(err, &ye) || ye.File != "f.yaml" {
				t.Errorf("error %T is not a *Error naming the file", err)
			}
		})
	}
}

// TestDecodeTooLarge: Decode refuses a document over MaxDocumentBytes before parsing.
func TestDecodeTooLarge(t *testing.T) {
	data := []byte(strings.Repeat("#\n", MaxDocumentBytes/2) + "x: 1\n")
	var m map[string]string
	doc, err := Decode("f.yaml", data, &m)
	want := fmt.Sprintf("f.yaml: the file is %d bytes (1.0 MiB); a YAML document is at most 1048576 bytes (1.0 MiB) (is this the right file?)", len(data))
	if doc != nil || err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if _, err := Decode("f.yaml", data[:MaxDocumentBytes], &m); err != nil {
		t.Fatalf("a document of MaxDocumentBytes: %v", err)
	}
}

// TestReadFile: a file over the limit is refused without being read (its size from
// Stat), a stream over it is cut off at limit+1 bytes, and other errors are the os ones.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(50 << 20); err != nil { // sparse: 50 MiB that cost no disk
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = ReadFile(big, 1<<20, "a test file")
	runtime.ReadMemStats(&after)
	want := big + ": the file is 52428800 bytes (50.0 MiB); a test file is at most 1048576 bytes (1.0 MiB) (is this the right file?)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if errors.As(err, new(*Error)) == false {
		t.Errorf("%T is not a *Error", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("refusing a 50 MiB file allocated %d bytes: it was read", n)
	}

	small := filepath.Join(dir, "small.yaml")
	if err := os.WriteFile(small, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(small, 5, "a test file"); err != nil || string(b) != "a: 1\n" {
		t.Errorf("file at the limit: %q %v", b, err)
	}
	if _, err := ReadFile(small, 4, "a test file"); err == nil || !strings.Contains(err.Error(), "the file is 5 bytes; a test file is at most 4 bytes") {
		t.Errorf("file one byte over: %v", err)
	}
	// /dev/zero: a device, no size from Stat, endless; the read stops at limit+1.
	if _, err := ReadFile("/dev/zero", 1024, "a test file"); err == nil ||
		err.Error() != "/dev/zero: the file is more than 1024 bytes (1.0 KiB); a test file is at most 1024 bytes (1.0 KiB) (is this the right file?)" {
		t.Errorf("/dev/zero: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "nope.yaml"), 1024, "a test file"); !errors.Is(err, fs.ErrNotExist) || errors.As(err, new(*Error)) {
		t.Errorf("missing file: %T %v", err, err)
	}
}

func TestReadFileFS(t *testing.T) {
	fsys := fstest.MapFS{"p.yaml": {Data: []byte("name: x\n")}, "big.yaml": {Data: make([]byte, 2000)}}
	if b, err := ReadFileFS(fsys, "p.yaml", "dir/p.yaml", 1000, "a profile"); err != nil || string(b) != "name: x\n" {
		t.Errorf("%q %v", b, err)
	}
	_, err := ReadFileFS(fsys, "big.yaml", "dir/big.yaml", 1000, "a profile")
	if want := "dir/big.yaml: the file is 2000 bytes (2.0 KiB); a profile is at most 1000 bytes (is this the right file?)"; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if _, err := ReadFileFS(fsys, "nope.yaml", "dir/nope.yaml", 1000, "a profile"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

// TestHas: a key written with a value, a key written null, a key left out.
func TestHas(t *testing.T) {
	var c config
	doc, err := Decode("f.yaml", []byte("on: false\ntags:\ndiscovery:\n  serial:\n    - {name: a, baud: 0, every: ~}\n    - &b {count: 1}\n    - <<: *b\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"on": true, "tags": false, "discovery.serial[0].baud": true, "discovery.serial[0].every": false,
		"discovery.serial[0].share": false, "discovery.serial[2].count": true, "discovery.serial[2].name": false, "nothing": false,
	} {
		if got := doc.Has(key); got != want {
			t.Errorf("Has(%q) = %v, want %v", key, got, want)
		}
	}
	if (*Doc)(nil).Has("on") {
		t.Error("nil Doc has a key")
	}
}

// TestAnchorsByPosition: an alias refers to the last anchor of its name before it, also
// when the name is defined again after it.
func TestAnchorsByPosition(t *testing.T) {
	var c config
	_, err := Decode("f.yaml", []byte("tags: [&a x, *a, &a y, *a, &a z]\n"), &c)
	if err != nil || strings.Join(c.Tags, ",") != "x,x,y,y,z" {
		t.Fatalf("%v %v", c.Tags, err)
	}
}

// TestMergeChainBounded: mappings that each merge the one before are bounded by the
// value budget (maxNodes), not expanded in time quadratic in their number.
func TestMergeChainBounded(t *testing.T) {
	type chain struct {
		X    []map[string]string `yaml:"x"`
		Meta map[string]string   `yaml:"meta"`
	}
	var b strings.Builder
	b.WriteString("x:\n  - &a0 {k0: v}\n")
	const n = 5000
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - &a%d {<<: *a%d, k%d: v}\n", i, i-1, i)
	}
	fmt.Fprintf(&b, "meta: *a%d\n", n)
	var c chain
	_, err := Decode("f.yaml", []byte(b.String()), &c)
	if err == nil || !strings.Contains(err.Error(), "the document has more than 200000 values (aliases and merge keys expanded)") {
		t.Fatalf("error %.300v", err)
	}
	// A short chain merges in full.
	c = chain{}
	if _, err := Decode("f.yaml", []byte("x:\n  - &a {k0: v}\n  - &b {<<: *a, k1: v}\nmeta: {<<: *b, k2: v}\n"), &c); err != nil || len(c.Meta) != 3 {
		t.Fatalf("%v %v", c.Meta, err)
	}
}

// TestJoinManyErrors: Join of many decoding errors and rule violations keeps the rule
// that a violation under a failed key is dropped, at any count.
func TestJoinManyErrors(t *testing.T) {
	const n = 20000
	var errs []error
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("list[%d].unit", i)
		errs = append(errs, &Error{File: "f", Line: i + 1, Key: k, Msg: "expected an integer", decoding: true},
			&Error{File: "f", Line: i + 1, Key: k, Msg: "out of range"},
			&Error{File: "f", Line: i + 1, Key: fmt.Sprintf("list[%d]", i), Msg: "kept"})
	}
	start := time.Now()
	err := Join(errs...)
	t.Logf("Join of %d errors: %v", len(errs), time.Since(start))
	j, ok := err.(interface{ Unwrap() []error })
	if !ok || len(j.Unwrap()) != 2*n {
		t.Fatalf("want %d errors kept", 2*n)
	}
	for _, e := range j.Unwrap() {
		if strings.Contains(e.Error(), "out of range") {
			t.Fatalf("violation under a failed key kept: %v", e)
		}
	}
}
