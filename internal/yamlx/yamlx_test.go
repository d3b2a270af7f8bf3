package yamlx

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

type bus struct {
	Name    string            `yaml:"name"`
	Baud    int               `yaml:"baud"`
	Every   time.Duration     `yaml:"every"`
	Count   uint16            `yaml:"count"`
	Share   float64           `yaml:"share"`
	Meta    map[string]string `yaml:"meta"`
	Object  *int              `yaml:"object"`
	Skipped string            `yaml:"-"`
}

type discovery struct {
	Serial []bus `yaml:"serial"`
}

type config struct {
	Discovery discovery `yaml:"discovery"`
	On        bool      `yaml:"on"`
	Tags      []string  `yaml:"tags"`
}

// TestDecodeErrors: each document gives exactly these errors, in this order, with file,
// line, column and key path.
func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"type mismatch in a flow mapping", "discovery: {serial: [ {name: bus1, baud: fast} ]}\n",
			[]string{`f.yaml:1:42: discovery.serial[0].baud: expected an integer, got "fast"`}},
		{"unknown key in a flow mapping", "discovery: {serial: [ {name: bus1, bauds: 9600} ]}\n",
			[]string{`f.yaml:1:36: discovery.serial[0].bauds: unknown key "bauds" (expected one of: name, baud, every, count, share, meta, object)`}},
		{"unknown key, block style", "discovery:\n  serial:\n    - name: a\n      baudrate: 9600\n",
			[]string{`f.yaml:4:7: discovery.serial[0].baudrate: unknown key "baudrate" (expected one of: name, baud, every, count, share, meta, object)`}},
		{"every problem in one run", "discovery:\n  serial:\n    - {name: a, bogus: 1, baud: fast, every: soon, more: 2}\n    - name: b\n      count: 70000\n  other: 3\non: maybe\n",
			[]string{
				`f.yaml:3:17: discovery.serial[0].bogus: unknown key "bogus"`,
				`f.yaml:3:33: discovery.serial[0].baud: expected an integer, got "fast"`,
				`f.yaml:3:46: discovery.serial[0].every: expected a duration such as "250ms" or "30s", got "soon"`,
				`f.yaml:3:52: discovery.serial[0].more: unknown key "more"`,
				`f.yaml:5:14: discovery.serial[1].count: expected an integer from 0 to 65535, got 70000`,
				`f.yaml:6:3: discovery.other: unknown key "other" (expected one of: serial)`,
				`f.yaml:7:5: on: expected true or false, got "maybe"`,
			}},
		{"float into an integer", "discovery: {serial: [{baud: 9600.5}]}\n",
			[]string{`f.yaml:1:29: discovery.serial[0].baud: expected an integer, got 9600.5`}},
		{"quoted number into an integer", "discovery: {serial: [{baud: \"9600\"}]}\n",
			[]string{`f.yaml:1:29: discovery.serial[0].baud: expected an integer, got "9600"`}},
		{"integer into a duration", "discovery: {serial: [{every: 5}]}\n",
			[]string{`f.yaml:1:30: discovery.serial[0].every: expected a duration such as "250ms" or "30s", got 5`}},
		{"mapping into a string", "tags: [a, {b: c}]\n",
			[]string{`f.yaml:1:11: tags[1]: expected a string, got a mapping`}},
		{"scalar into a list", "tags: a\n",
			[]string{`f.yaml:1:7: tags: expected a list, got "a"`}},
		{"list into a struct", "discovery: [a]\n",
			[]string{`f.yaml:1:12: discovery: expected a mapping with keys serial, got a list`}},
		{"document not a mapping", "- a\n",
			[]string{`f.yaml:1:1: expected a mapping with keys discovery, on, tags, got a list`}},
		{"map value", "discovery: {serial: [{meta: {a: [x]}}]}\n",
			[]string{`f.yaml:1:33: discovery.serial[0].meta.a: expected a string, got a list`}},
		{"duplicate keys, each reported", "on: true\ntags: []\non: false\ndiscovery: {serial: [{name: a, name: b}]}\n",
			[]string{`f.yaml:3:1: on: key "on" appears twice (first at line 1)`,
				`f.yaml:4:32: discovery.serial[0].name: key "name" appears twice (first at line 4)`}},
		{"two documents", "on: true\n---\non: false\n", []string{"f.yaml:2:1: only one YAML document is allowed"}},
		{"syntax", "discovery:\n  serial:\n    - name: [\n", []string{"f.yaml:3:13: invalid YAML: sequence end token ']' not found"}},
		{"alias cycle", "tags: &a [*a]\n", []string{`f.yaml:1:11: tags[0]: alias to an anchor whose value contains it`}},
		{"merge of a scalar", "discovery:\n  <<: 3\n", []string{`f.yaml:2:7: discovery: a merge key (<<) takes a mapping or a list of mappings, got 3`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c config
			_, err := Decode("f.yaml", []byte(tc.in), &c)
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d\n got  %s\n want %s…", i, lines[i], w)
				}
			}
			var ye *Error
			if !errors.As(err, &ye) || ye.File != "f.yaml" {
				t.Errorf("error %T is not a *yamlx.Error naming the file", err)
			}
		})
	}
}

// TestDecodeValues: what decodes, and to what.
func TestDecodeValues(t *testing.T) {
	one := 1
	tests := []struct {
		name, in string
		want     config
	}{
		{"block and flow", "on: true\ndiscovery:\n  serial:\n    - name: a\n      baud: 9600\n      every: 250ms\n    - {name: b, count: 7, share: 1, object: 1}\n",
			config{On: true, Discovery: discovery{Serial: []bus{{Name: "a", Baud: 9600, Every: 250 * time.Millisecond}, {Name: "b", Count: 7, Share: 1, Object: &one}}}}},
		{"strings as written", "tags: [1.20, 0001, 0x1F, true, 'x', \"y\"]\n",
			config{Tags: []string{"1.20", "0001", "0x1F", "true", "x", "y"}}},
		{"meta with a number", "discovery: {serial: [{meta: {axis: 3}}]}\n",
			config{Discovery: discovery{Serial: []bus{{Meta: map[string]string{"axis": "3"}}}}}},
		{"merge", "discovery:\n  serial:\n    - &b {baud: 19200, name: x}\n    - <<: *b\n      name: y\n",
			config{Discovery: discovery{Serial: []bus{{Name: "x", Baud: 19200}, {Name: "y", Baud: 19200}}}}},
		{"alias", "tags: &t [a, b]\ndiscovery: {serial: [{meta: {k: v}}]}\n",
			config{Tags: []string{"a", "b"}, Discovery: discovery{Serial: []bus{{Meta: map[string]string{"k": "v"}}}}}},
		{"nulls", "on:\ntags: ~\ndiscovery: {serial: [{object: null}]}\n",
			config{Discovery: discovery{Serial: []bus{{}}}}},
		{"empty document", "# nothing\n", config{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c config
			_, err := Decode("f.yaml", []byte(tc.in), &c)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", c, tc.want)
			}
		})
	}
}

// TestPosAndErrorf: validation errors find the key, or its nearest parent.
func TestPosAndErrorf(t *testing.T) {
	var c config
	doc, err := Decode("f.yaml", []byte("on: true\ndiscovery:\n  serial:\n    - name: a\n      baud: 9600\n    - {name: b}\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key        string
		line, col  int
		wantString string
	}{
		{"discovery.serial[0].baud", 5, 7, "f.yaml:5:7: discovery.serial[0].baud: m"},
		{"discovery.serial[0]", 4, 7, "f.yaml:4:7: discovery.serial[0]: m"},
		{"discovery.serial[1].name", 6, 8, "f.yaml:6:8: discovery.serial[1].name: m"},
		{"discovery.serial[1].baud", 6, 7, "f.yaml:6:7: discovery.serial[1].baud: m"}, // absent: the item
		{"discovery.serial[7].baud", 3, 3, "f.yaml:3:3: discovery.serial[7].baud: m"}, // absent item: the list's key
		{"nothing.here", 1, 1, "f.yaml:1:1: nothing.here: m"},                         // the document
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			if line, col := doc.Pos(tc.key); line != tc.line || col != tc.col {
				t.Errorf("Pos = %d:%d, want %d:%d", line, col, tc.line, tc.col)
			}
			if got := doc.Errorf(tc.key, "m").Error(); got != tc.wantString {
				t.Errorf("Errorf = %q, want %q", got, tc.wantString)
			}
		})
	}
	var nilDoc *Doc
	if got := nilDoc.Errorf("a.b", "m %d", 1).Error(); got != "a.b: m 1" {
		t.Errorf("nil Doc: %q", got)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "f", Line: 3, Column: 5, Key: "a.b", Msg: "m"}, "f:3:5: a.b: m"},
		{Error{File: "f", Line: 3, Key: "a", Msg: "m"}, "f:3: a: m"},
		{Error{File: "f", Msg: "m"}, "f: m"},
		{Error{Line: 2, Column: 1, Key: "k", Msg: "m"}, "line 2:1: k: m"},
		{Error{Key: "k", Msg: "m"}, "k: m"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}

// TestJoin: ordering by position, flattening, and rule violations under a key that
// failed to decode left out.
func TestJoin(t *testing.T) {
	var c config
	doc, decErr := Decode("f.yaml", []byte("on: true\ndiscovery:\n  serial:\n    - {name: a, baud: fast}\n"), &c)
	if doc == nil || decErr == nil {
		t.Fatalf("want a Doc and a decoding error, got %v %v", doc, decErr)
	}
	plain := fmt.Errorf("not positioned")
	tests := []struct {
		name string
		errs []error
		want string
	}{
		{"none", []error{nil, nil}, "<nil>"},
		{"one as is", []error{doc.Errorf("on", "x")}, "f.yaml:1:1: on: x"},
		{"by line", []error{doc.Errorf("discovery.serial[0].name", "late"), doc.Errorf("on", "early")},
			"f.yaml:1:1: on: early\nf.yaml:4:8: discovery.serial[0].name: late"},
		{"flattened, unpositioned last", []error{plain, errors.Join(doc.Errorf("discovery", "b"), nil), (*Doc)(nil).Errorf("k", "c"), doc.Errorf("on", "a")},
			"f.yaml:1:1: on: a\nf.yaml:2:1: discovery: b\nk: c\nnot positioned"},
		{"violation repeating a decoding error dropped", []error{decErr, doc.Errorf("discovery.serial[0].baud", "must be positive"), doc.Errorf("discovery.serial[0]", "kept")},
			"f.yaml:4:7: discovery.serial[0]: kept\nf.yaml:4:23: discovery.serial[0].baud: expected an integer, got \"fast\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := fmt.Sprint(Join(tc.errs...))
			if got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	if _, ok := Join(doc.Errorf("on", "x")).(*Error); !ok {
		t.Error("a single error is not returned as *Error")
	}
}

func TestDecodeNeedsPointer(t *testing.T) {
	for _, out := range []any{config{}, (*config)(nil), nil} {
		if _, err := Decode("f.yaml", []byte("on: true\n"), out); err == nil || !strings.Contains(err.Error(), "non-nil pointer") {
			t.Errorf("Decode(%T): %v", out, err)
		}
	}
}

// TestAliasExpansionBounded: a "billion laughs" document is refused, quickly.
func TestAliasExpansionBounded(t *testing.T) {
	type laughs struct {
		A []string           `yaml:"a"`
		B [][]string         `yaml:"b"`
		C [][][]string       `yaml:"c"`
		D [][][][]string     `yaml:"d"`
		E [][][][][]string   `yaml:"e"`
		F [][][][][][]string `yaml:"f"`
	}
	doc := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for _, k := range []string{"b", "c", "d", "e", "f"} {
		prev := string(rune(k[0] - 1))
		doc += k + ": &" + k + " [" + strings.Repeat("*"+prev+", ", 9) + "*" + prev + "]\n"
	}
	start := time.Now()
	var l laughs
	_, err := Decode("f.yaml", []byte(doc), &l)
	if err == nil || !strings.Contains(err.Error(), "more than 200000 values") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if _, err := Decode("f.yaml", []byte("tags: [*nope]\n"), &config{}); err == nil {
		t.Error("alias to an unknown anchor accepted")
	}
}
