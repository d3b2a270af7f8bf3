// Package yamlx decodes YAML strictly (unknown keys are errors) and reports every error
// as "file:line: key: what is expected", the shape automation engineers can act on
// without reading Go type names.
package yamlx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one configuration error at a place in a file.
type Error struct {
	File string // file name as given to Decode
	Line int    // 1-based line, 0 when unknown
	Key  string // dotted key path, e.g. "discovery.serial[0].baud"; may be empty
	Msg  string // what is wrong / what is expected
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Doc is a decoded document, kept to locate keys for validation errors.
type Doc struct {
	File string
	root *yaml.Node
}

// Decode strictly decodes data (one YAML document) into out. Unknown keys, type
// mismatches, duplicate keys and a second document are errors of type *Error (joined
// with errors.Join when several). An empty document decodes to out unchanged.
func Decode(file string, data []byte, out any) (*Doc, error) {
	doc := &Doc{File: file}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return doc, nil
		}
		return doc, doc.convert(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		return doc, &Error{File: file, Line: line, Msg: "only one YAML document is allowed"}
	}
	doc.root = &root
	// Re-decode strictly from bytes: Node.Decode does not support KnownFields.
	sdec := yaml.NewDecoder(bytes.NewReader(data))
	sdec.KnownFields(true)
	if err := sdec.Decode(out); err != nil {
		return doc, doc.convert(err)
	}
	return doc, nil
}

var (
	reLine     = regexp.MustCompile(`^line (\d+): (.*)$`)
	reUnknown  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	reMismatch = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
	reAlready  = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
)

// convert turns a yaml.v3 error into *Error values with file, line and key.
func (d *Doc) convert(err error) error {
	var te *yaml.TypeError
	var lines []string
	if errors.As(err, &te) {
		lines = te.Errors
	} else {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		lines = []string{msg}
	}
	var errs []error
	for _, l := range lines {
		e := &Error{File: d.File, Msg: l}
		if m := reLine.FindStringSubmatch(l); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
		}
		switch {
		case reUnknown.MatchString(e.Msg):
			m := reUnknown.FindStringSubmatch(e.Msg)
			e.Key = d.keyAtLine(e.Line, m[1])
			e.Msg = fmt.Sprintf("unknown key %q", m[1])
		case reMismatch.MatchString(e.Msg):
			m := reMismatch.FindStringSubmatch(e.Msg)
			e.Key = d.keyAtLine(e.Line, "")
			e.Msg = fmt.Sprintf("expected %s, got %s %q", describeGoType(m[3]), m[1], m[2])
		case reAlready.MatchString(e.Msg):
			m := reAlready.FindStringSubmatch(e.Msg)
			e.Msg = fmt.Sprintf("key %q appears twice (first at line %s)", m[1], m[2])
		}
		errs = append(errs, e)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

func describeGoType(t string) string {
	switch {
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "time.Duration" || strings.HasSuffix(t, ".Duration"):
		return `a duration such as "250ms" or "30s"`
	}
	return "a mapping (" + t + ")"
}

// keyAtLine finds the key path whose key (or, when name is empty, whose value) sits on
// line. Returns "" when not found.
func (d *Doc) keyAtLine(line int, name string) string {
	if d.root == nil || line == 0 {
		return name
	}
	var found string
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if found != "" {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				if k.Line == line && (name == "" || k.Value == name) {
					found = p
					return
				}
				if name == "" && v.Line == line && v.Kind == yaml.ScalarNode {
					found = p
					return
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				if name == "" && c.Line == line && c.Kind == yaml.ScalarNode {
					found = p
					return
				}
				walk(c, p)
			}
		}
	}
	walk(d.root, "")
	if found == "" {
		return name
	}
	return found
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Errorf returns an *Error for the dotted key path (e.g. "discovery.serial[0].baud"),
// with the line of that key in the document when it is present, else the line of its
// nearest present parent.
func (d *Doc) Errorf(key, format string, args ...any) error {
	return &Error{File: d.File, Line: d.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Line returns the line of a dotted key path, of its nearest present parent, or 0.
func (d *Doc) Line(key string) int {
	if d == nil || d.root == nil {
		return 0
	}
	n := d.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range splitPath(key) {
		if idx, err := strconv.Atoi(part); err == nil && n.Kind == yaml.SequenceNode {
			if idx < 0 || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
			continue
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		next := (*yaml.Node)(nil)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// splitPath splits "a.b[2].c" into ["a","b","2","c"].
func splitPath(key string) []string {
	key = strings.NewReplacer("[", ".", "]", "").Replace(key)
	var out []string
	for _, p := range strings.Split(key, ".") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
