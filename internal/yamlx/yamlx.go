// Package yamlx decodes YAML strictly and reports every problem of a file at once, each
// as "file:line:column: key: what is expected", the shape automation engineers can act on
// without reading Go type names.
//
// Parsing is github.com/goccy/go-yaml v1.19.2 (YAML 1.2): its parser gives the syntax
// tree with the line and column of every token, and its decoder converts scalars. The
// tree is walked here against the Go type of the destination, so that the key path of
// every value is known (an error inside a flow mapping names the right key) and the walk
// goes on after an unknown key, a duplicate key or a type mismatch.
package yamlx

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Error is one configuration problem at a place in a file.
type Error struct {
	File   string // file name as given to Decode; "" for a value built in code
	Line   int    // 1-based line; 0 when unknown
	Column int    // 1-based column of the token on Line; 0 when unknown
	Key    string // key path, e.g. "discovery.serial[0].baud"; "" for the whole document
	Msg    string // what is wrong and what is expected

	// decoding marks an error found while decoding (unknown or duplicate key, wrong
	// type): Join drops rule violations reported at or under its Key, which only
	// repeat it.
	decoding bool
}

// Error formats e as "file:line:column: key: message", leaving out the parts that are
// unknown ("line N:C: key: message" when there is no file).
func (e *Error) Error() string {
	var b strings.Builder
	pos := ""
	if e.Line > 0 {
		pos = strconv.Itoa(e.Line)
		if e.Column > 0 {
			pos += ":" + strconv.Itoa(e.Column)
		}
	}
	switch {
	case e.File != "" && pos != "":
		b.WriteString(e.File + ":" + pos + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case pos != "":
		b.WriteString("line " + pos + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// internalError starts the message of a panic recovered by Decode.
const internalError = "yamlx: internal error decoding YAML"

// pos is a place in the file.
type pos struct{ line, col int }

// Doc is a decoded document, kept to locate key paths for validation errors.
type Doc struct {
	// File is the file name given to Decode.
	File  string
	keys  map[string]pos  // key path → position of its key (of the item, for list items)
	nulls map[string]bool // key paths whose value is null ("key:", "key: ~")
}

// maxNodes bounds the values one Decode visits, aliases expanded, plus the entries merge
// keys bring (a YAML "billion laughs" document, or a chain of mappings each merging the
// one before, would otherwise expand without end or in time quadratic in its size).
const maxNodes = 200_000

// Decode strictly decodes data, one YAML document, into out, a non-nil pointer (to a
// struct, typically). Struct fields are matched by their `yaml` tag (goccy/go-yaml
// conventions: the lower-cased field name when untagged, "-" skips the field, ",inline"
// flattens a struct field). Integer fields take only integers, float fields numbers,
// bool fields true or false; a string field takes any scalar, as written. Merge keys
// ("<<") and aliases are resolved; explicit tags are ignored. An empty document leaves
// out unchanged.
//
// When the YAML is malformed (a syntax error, more than one document) or over a limit
// (MaxDocumentBytes, MaxMappingKeys, MaxDepth; checked before parsing, in time linear
// in the size of data) the returned Doc is nil and the error says where. Otherwise the Doc is non-nil, and the error, if any,
// reports every unknown key, duplicate key and value of the wrong type found, each a
// *Error, joined with errors.Join in order of position; out then holds everything that
// did decode. Validate it with the Doc and report both with Join.
func Decode(file string, data []byte, out any) (doc *Doc, err error) {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, &Error{File: file, Msg: fmt.Sprintf("yamlx: Decode needs a non-nil pointer, got %T", out)}
	}
	defer func() {
		// A panic here is a bug of goccy/go-yaml or of the walk: reported (and found by
		// FuzzDecode) rather than crashing the program that loads a config.
		if p := recover(); p != nil {
			doc, err = nil, &Error{File: file, Msg: fmt.Sprintf("%s: %v", internalError, p)}
		}
	}()
	if len(data) > MaxDocumentBytes {
		return nil, tooLarge(file, int64(len(data)), MaxDocumentBytes, "a YAML document")
	}
	tokens := lexer.Tokenize(string(data))
	if tokens.InvalidToken() == nil { // else Parse reports the syntax error
		if e := checkShape(file, tokens); e != nil {
			return nil, e
		}
	}
	f, err := parser.Parse(tokens, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		e := &Error{File: file, Msg: "invalid YAML"}
		var ye yaml.Error
		if errors.As(err, &ye) {
			e.Msg += ": " + ye.GetMessage()
			e.Line, e.Column = tokenPos(ye.GetToken())
		}
		return nil, e
	}
	var body ast.Node
	for i, d := range f.Docs {
		if d == nil || d.Body == nil && (i == 0 || d.Start == nil) {
			continue
		}
		if body != nil || i > 0 {
			e := &Error{File: file, Msg: "only one YAML document is allowed"}
			if d.Start != nil {
				e.Line, e.Column = tokenPos(d.Start)
			} else {
				e.Line, e.Column = nodePos(d.Body)
			}
			return nil, e
		}
		body = d.Body
	}
	doc = &Doc{File: file, keys: map[string]pos{}, nulls: map[string]bool{}}
	if body == nil {
		return doc, nil
	}
	dec := &decoder{
		doc:     doc,
		anchors: map[string][]*ast.AnchorNode{},
		active:  map[*ast.AnchorNode]bool{},
		fields:  map[reflect.Type]*structFields{},
		budget:  maxNodes,
	}
	ast.Walk(dec, body)
	for _, as := range dec.anchors {
		slices.SortStableFunc(as, func(a, b *ast.AnchorNode) int { return offset(a) - offset(b) })
	}
	line, col := nodePos(body)
	doc.keys[""] = pos{line, col}
	dec.value(body, rv.Elem(), "")
	return doc, Join(dec.errs...)
}

// Pos returns the line and column of a key path such as "discovery.serial[0].baud"
// (of its key; of the item for a list item), or of its nearest ancestor present in the
// document, or 0, 0. The path "" is the document. A nil Doc returns 0, 0.
func (d *Doc) Pos(key string) (line, col int) {
	if d == nil {
		return 0, 0
	}
	for {
		if p, ok := d.keys[key]; ok {
			return p.line, p.col
		}
		if key == "" {
			return 0, 0
		}
		key = parent(key)
	}
}

// Has reports whether the key path (e.g. "health.failures_before_critical",
// "discovery.serial[0].baud") is written in the document with a value, so that a caller
// can tell a value given as zero from one left out. A key whose value is null ("key:",
// "key: ~") counts as left out, as Decode leaves its field unchanged. A nil Doc has no
// keys.
func (d *Doc) Has(key string) bool {
	if d == nil {
		return false
	}
	_, ok := d.keys[key]
	return ok && !d.nulls[key]
}

// Errorf returns an *Error for the key path (e.g. "discovery.serial[0].baud") at the
// position Pos gives. A nil Doc gives an *Error without file or position.
func (d *Doc) Errorf(key, format string, args ...any) *Error {
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	if d != nil {
		e.File = d.File
		e.Line, e.Column = d.Pos(key)
	}
	return e
}

// DecodeErrorf is Errorf for a problem of the YAML form itself that the caller finds
// after Decode, such as a required key that is missing or a value its Go type cannot
// hold: like Decode's own errors, Join drops rule violations reported at or under key.
func (d *Doc) DecodeErrorf(key, format string, args ...any) *Error {
	e := d.Errorf(key, format, args...)
	e.decoding = true
	return e
}

// Join returns the errors of one file as one error: nil ones dropped, joined ones
// flattened, a rule violation dropped when a decoding error (of Decode, or made with
// DecodeErrorf) was reported at or under its key (it would only repeat it), and the
// *Error values in order of line and column (those without a line last, in the order
// given; other errors after them). One error is returned as it is; several are joined
// with errors.Join. Nil when none.
func Join(errs ...error) error {
	var flat []error
	var flatten func(err error)
	flatten = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				flatten(e)
			}
			return
		}
		flat = append(flat, err)
	}
	for _, err := range errs {
		flatten(err)
	}
	failed := map[string]bool{} // key paths of decoding errors
	for _, err := range flat {
		if e, ok := err.(*Error); ok && e.decoding {
			failed[e.Key] = true
		}
	}
	var ours []*Error
	var others []error
	for _, err := range flat {
		e, ok := err.(*Error)
		if !ok {
			others = append(others, err)
			continue
		}
		if !e.decoding && len(failed) > 0 && underFailed(e.Key, failed) {
			continue
		}
		ours = append(ours, e)
	}
	slices.SortStableFunc(ours, func(a, b *Error) int {
		switch {
		case a.Line == b.Line:
			return a.Column - b.Column
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
	all := make([]error, 0, len(ours)+len(others))
	for _, e := range ours {
		all = append(all, e)
	}
	all = append(all, others...)
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	return errors.Join(all...)
}

// underFailed reports whether key path k, or one of its ancestors (parent), is in
// failed: a lookup per ancestor, so that Join takes time linear in the errors.
func underFailed(k string, failed map[string]bool) bool {
	for {
		if failed[k] {
			return true
		}
		if k == "" {
			return false
		}
		k = parent(k)
	}
}

// parent returns the key path one level up: "a.b[2]" → "a.b" → "a" → "".
func parent(key string) string {
	if i := strings.LastIndexAny(key, ".["); i >= 0 {
		return key[:i]
	}
	return ""
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func tokenPos(tk *token.Token) (line, col int) {
	if tk == nil || tk.Position == nil {
		return 0, 0
	}
	return tk.Position.Line, tk.Position.Column
}

// nodePos is where a value starts: the first key of a block mapping, else its token.
func nodePos(n ast.Node) (line, col int) {
	switch m := n.(type) {
	case nil:
		return 0, 0
	case *ast.MappingNode:
		if !m.IsFlowStyle && len(m.Values) > 0 && m.Values[0].Key != nil {
			return tokenPos(m.Values[0].Key.GetToken())
		}
	case *ast.MappingValueNode:
		if m.Key != nil {
			return tokenPos(m.Key.GetToken())
		}
	}
	return tokenPos(n.GetToken())
}

// decoder walks the syntax tree of one document against the destination's Go type.
type decoder struct {
	doc     *Doc
	anchors map[string][]*ast.AnchorNode // by name, in document order (sorted by offset)
	active  map[*ast.AnchorNode]bool     // anchors being expanded (an alias to one is a cycle)
	fields  map[reflect.Type]*structFields
	budget  int // values (and merged entries) left to visit
	errs    []error
}

// spend takes n from the budget of values; when it runs out it reports that once, at
// node n of key path key, and returns false (then, and after).
func (d *decoder) spend(cost int, n ast.Node, key string) bool {
	if d.budget < 0 {
		return false
	}
	if d.budget -= cost; d.budget < 0 {
		d.fail(n, key, "the document has more than %d values (aliases and merge keys expanded)", maxNodes)
		return false
	}
	return true
}

// Visit collects the anchors of the document (ast.Visitor).
func (d *decoder) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		name := a.Name.GetToken().Value
		d.anchors[name] = append(d.anchors[name], a)
	}
	return d
}

// fail records a decoding error at node n.
func (d *decoder) fail(n ast.Node, key, format string, args ...any) {
	e := &Error{File: d.doc.File, Key: key, Msg: fmt.Sprintf(format, args...), decoding: true}
	e.Line, e.Column = nodePos(n)
	d.errs = append(d.errs, e)
}

// resolve follows anchors, aliases and tags to the value node; done must be called when
// the value has been decoded. ok is false (and the error recorded) for an alias to an
// unknown anchor or to a value that contains the alias.
func (d *decoder) resolve(n ast.Node, key string) (v ast.Node, done func(), ok bool) {
	at := n
	var opened []*ast.AnchorNode
	done = func() {
		for _, a := range opened {
			delete(d.active, a)
		}
	}
	for {
		switch x := n.(type) {
		case *ast.AnchorNode:
			if d.active[x] {
				d.fail(at, key, "alias to an anchor whose value contains it")
				return nil, done, false
			}
			d.active[x] = true
			opened = append(opened, x)
			n = x.Value
		case *ast.AliasNode:
			a := d.anchor(x)
			if a == nil {
				d.fail(at, key, "alias to an unknown anchor %s", x.String())
				return nil, done, false
			}
			n = a
		case *ast.TagNode:
			n = x.Value
		default:
			return n, done, true
		}
	}
}

// anchor returns the last anchor of the alias's name defined before it, or nil.
func (d *decoder) anchor(x *ast.AliasNode) *ast.AnchorNode {
	if x.Value == nil {
		return nil
	}
	as := d.anchors[x.Value.GetToken().Value]
	at := offset(x)
	// The anchors before the alias are a prefix (as is sorted by offset): binary search,
	// so that many aliases of one name cost n log n, not n².
	i, _ := slices.BinarySearchFunc(as, at, func(a *ast.AnchorNode, at int) int { return offset(a) - at })
	if i == 0 {
		return nil
	}
	return as[i-1]
}

// offset is the offset in the document of a node's token (-1 when unknown).
func offset(n ast.Node) int {
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Offset
	}
	return -1
}

// custom reports whether t decodes itself: *t implements one of goccy/go-yaml's
// unmarshaler interfaces or encoding.TextUnmarshaler (the method set of *t includes t's).
func custom(t reflect.Type) bool {
	switch reflect.New(t).Interface().(type) {
	case yaml.BytesUnmarshaler, yaml.InterfaceUnmarshaler, yaml.NodeUnmarshaler,
		yaml.BytesUnmarshalerContext, yaml.InterfaceUnmarshalerContext, yaml.NodeUnmarshalerContext,
		encoding.TextUnmarshaler:
		return true
	}
	return false
}

// isDuration reports whether t is time.Duration, written as a string such as "250ms".
func isDuration(t reflect.Type) bool { return t == reflect.TypeFor[time.Duration]() }

// value decodes node n into rv (settable), key being its path.
func (d *decoder) value(n ast.Node, rv reflect.Value, key string) {
	if !d.spend(1, n, key) {
		return
	}
	n, done, ok := d.resolve(n, key)
	defer done()
	if !ok {
		return
	}
	t := rv.Type()
	if n == nil || n.Type() == ast.NullType {
		switch t.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			rv.SetZero()
		}
		return
	}
	if custom(t) {
		d.leaf(n, rv, key)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if !rv.IsNil() {
			p.Elem().Set(rv.Elem())
		}
		errs := len(d.errs)
		d.value(n, p.Elem(), key)
		if len(d.errs) == errs || t.Elem().Kind() == reflect.Struct {
			rv.Set(p)
		}
	case reflect.Struct:
		d.structure(n, rv, key)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			d.leaf(n, rv, key)
			return
		}
		d.sequence(n, rv, key)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			d.leaf(n, rv, key)
			return
		}
		d.mapping(n, rv, key)
	default:
		d.leaf(n, rv, key)
	}
}

// leaf decodes a scalar (or anything the destination decodes itself) with
// goccy/go-yaml, after checking that the node is of a kind the type takes.
func (d *decoder) leaf(n ast.Node, rv reflect.Value, key string) {
	t := rv.Type()
	nt := n.Type()
	if !custom(t) {
		ok := true
		switch k := t.Kind(); {
		case isDuration(t):
			ok = nt == ast.StringType
		case k >= reflect.Int && k <= reflect.Uint64:
			ok = nt == ast.IntegerType
		case k == reflect.Float32 || k == reflect.Float64:
			ok = nt == ast.IntegerType || nt == ast.FloatType || nt == ast.InfinityType || nt == ast.NanType
		case k == reflect.Bool:
			ok = nt == ast.BoolType
		case k == reflect.String:
			switch nt {
			case ast.StringType, ast.LiteralType:
			case ast.IntegerType, ast.FloatType, ast.BoolType, ast.InfinityType, ast.NanType:
				// As written: goccy/go-yaml would turn "1.20" into "1.2" and "0001" into "1".
				rv.SetString(n.GetToken().Value)
				return
			default:
				ok = false
			}
		}
		if !ok {
			d.fail(n, key, "expected %s, got %s", describeType(t), describeNode(n))
			return
		}
	}
	p := reflect.New(t)
	if err := yaml.NodeToValue(n, p.Interface(), yaml.Strict()); err != nil {
		var te *yaml.TypeError
		var oe *yaml.OverflowError
		switch {
		case errors.As(err, &te), errors.As(err, &oe), isDuration(t):
			d.fail(n, key, "expected %s, got %s", describeType(t), describeNode(n))
		default:
			d.fail(n, key, "expected %s, got %s: %v", describeType(t), describeNode(n), err)
		}
		return
	}
	rv.Set(p.Elem())
}

// sequence decodes a list into a slice.
func (d *decoder) sequence(n ast.Node, rv reflect.Value, key string) {
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(n, key, "expected %s, got %s", describeType(rv.Type()), describeNode(n))
		return
	}
	s := reflect.MakeSlice(rv.Type(), len(seq.Values), len(seq.Values))
	for i, item := range seq.Values {
		ik := key + "[" + strconv.Itoa(i) + "]"
		if _, seen := d.doc.keys[ik]; !seen {
			line, col := nodePos(item)
			d.doc.keys[ik] = pos{line, col}
		}
		d.value(item, s.Index(i), ik)
	}
	rv.Set(s)
}

// mapping decodes a mapping into a map with string keys.
func (d *decoder) mapping(n ast.Node, rv reflect.Value, key string) {
	entries, ok := d.entries(n, key)
	if !ok {
		d.fail(n, key, "expected %s, got %s", describeType(rv.Type()), describeNode(n))
		return
	}
	d.record(entries)
	if rv.IsNil() {
		rv.Set(reflect.MakeMap(rv.Type()))
	}
	for _, e := range entries {
		v := reflect.New(rv.Type().Elem()).Elem()
		errs := len(d.errs)
		d.value(e.val, v, e.path)
		if len(d.errs) == errs {
			rv.SetMapIndex(reflect.ValueOf(e.name).Convert(rv.Type().Key()), v)
		}
	}
}

// structure decodes a mapping into a struct, reporting unknown keys.
func (d *decoder) structure(n ast.Node, rv reflect.Value, key string) {
	sf := d.structFields(rv.Type())
	entries, ok := d.entries(n, key)
	if !ok {
		d.fail(n, key, "expected %s, got %s", describeType(rv.Type()), describeNode(n))
		return
	}
	d.record(entries)
	for _, e := range entries {
		idx, known := sf.index[e.name]
		if !known {
			d.fail(e.key, e.path, "unknown key %q (expected one of: %s)", e.name, strings.Join(sf.names, ", "))
			continue
		}
		d.value(e.val, rv.FieldByIndex(idx), e.path)
	}
}

// entry is one key: value of a mapping, merge keys resolved.
type entry struct {
	name string   // the key as written
	path string   // key path of the value
	key  ast.Node // the key node (for positions)
	val  ast.Node
}

// entries returns the entries of a mapping node in document order, with the entries of
// merge keys ("<<: *base", "<<: [*a, *b]") the mapping does not override; duplicate and
// non-scalar keys are reported and left out. ok is false when n is not a mapping.
func (d *decoder) entries(n ast.Node, key string) (out []entry, ok bool) {
	var pairs []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		return nil, false
	}
	first := map[string]ast.Node{}
	var merged []entry
	for _, p := range pairs {
		if p.Key != nil && p.Key.IsMergeKey() {
			merged = append(merged, d.mergeEntries(p.Value, key)...)
			continue
		}
		name, ok := d.keyName(p.Key, key)
		if !ok {
			continue
		}
		path := join(key, name)
		if prev, dup := first[name]; dup {
			line, _ := nodePos(prev)
			d.fail(p.Key, path, "key %q appears twice (first at line %d)", name, line)
			continue
		}
		first[name] = p.Key
		out = append(out, entry{name: name, path: path, key: p.Key, val: p.Value})
	}
	for _, e := range merged {
		if _, dup := first[e.name]; dup {
			continue
		}
		first[e.name] = e.key
		out = append(out, e)
	}
	return out, true
}

// record notes the position of each entry's key, for Doc.Pos, and whether its value is
// null, for Doc.Has.
func (d *decoder) record(entries []entry) {
	for _, e := range entries {
		if _, seen := d.doc.keys[e.path]; !seen {
			line, col := nodePos(e.key)
			d.doc.keys[e.path] = pos{line, col}
			if e.val == nil || e.val.Type() == ast.NullType {
				d.doc.nulls[e.path] = true
			}
		}
	}
}

// mergeEntries returns the entries a merge key's value brings: one mapping, or a list
// of mappings of which the first has precedence (YAML merge key type,
// https://yaml.org/type/merge.html).
func (d *decoder) mergeEntries(v ast.Node, key string) []entry {
	if !d.spend(1, v, key) {
		return nil
	}
	v, done, ok := d.resolve(v, key)
	defer done()
	if !ok {
		return nil
	}
	if seq, isSeq := v.(*ast.SequenceNode); isSeq {
		var out []entry
		for _, item := range seq.Values {
			out = append(out, d.mergeEntries(item, key)...)
		}
		return out
	}
	out, isMap := d.entries(v, key)
	if !isMap {
		d.fail(v, key, "a merge key (<<) takes a mapping or a list of mappings, got %s", describeNode(v))
	}
	if !d.spend(len(out), v, key) {
		return nil
	}
	return out
}

// keyName returns the text of a mapping key; a key that is not a scalar is reported.
func (d *decoder) keyName(k ast.Node, key string) (string, bool) {
	if mk, ok := k.(*ast.MappingKeyNode); ok {
		k = mk.Value
	}
	k, done, ok := d.resolve(k, key)
	defer done()
	if !ok {
		return "", false
	}
	switch s := k.(type) {
	case *ast.StringNode:
		return s.Value, true
	case *ast.LiteralNode:
		return s.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NullNode, *ast.InfinityNode, *ast.NanNode:
		return s.GetToken().Value, true
	}
	d.fail(k, key, "keys must be scalars, got %s", describeNode(k))
	return "", false
}

// structFields are the YAML keys of a struct type.
type structFields struct {
	names []string         // in field order
	index map[string][]int // key → field index path
}

// structFields returns the keys of struct type t, following goccy/go-yaml's rules
// (exported fields; `yaml` tag name, else the `json` tag name, else the lower-cased
// field name; "-" skips; ",inline" flattens a struct field).
func (d *decoder) structFields(t reflect.Type) *structFields {
	if sf, ok := d.fields[t]; ok {
		return sf
	}
	sf := &structFields{index: map[string][]int{}}
	var add func(t reflect.Type, prefix []int)
	add = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "" {
				tag = f.Tag.Get("json")
			}
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" && opts == "" {
				continue
			}
			idx := append(slices.Clone(prefix), i)
			if slices.Contains(strings.Split(opts, ","), "inline") && f.Type.Kind() == reflect.Struct {
				add(f.Type, idx)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if _, dup := sf.index[name]; !dup {
				sf.names = append(sf.names, name)
				sf.index[name] = idx
			}
		}
	}
	add(t, nil)
	d.fields[t] = sf
	return sf
}

// describeType says in words what a value of type t is written as.
func describeType(t reflect.Type) string {
	if isDuration(t) {
		return `a duration such as "250ms" or "30s"`
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Int8, reflect.Int16, reflect.Int32:
		bits := t.Bits()
		return fmt.Sprintf("an integer from %d to %d", -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1)
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return "an integer ≥ 0"
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return fmt.Sprintf("an integer from 0 to %d", uint64(math.MaxUint64)>>(64-t.Bits()))
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "a mapping"
	case reflect.Pointer:
		return describeType(t.Elem())
	case reflect.Struct:
		if custom(t) {
			return "a " + t.Name()
		}
		sf := (&decoder{fields: map[reflect.Type]*structFields{}}).structFields(t)
		return "a mapping with keys " + strings.Join(sf.names, ", ")
	}
	return "a " + t.String()
}

// describeNode says what a node is, for "got ..." in messages: a scalar as written
// (strings quoted), else its kind.
func describeNode(n ast.Node) string {
	switch n.Type() {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.NullType:
		return "nothing"
	case ast.StringType:
		if s, ok := n.(*ast.StringNode); ok {
			return strconv.Quote(s.Value)
		}
	case ast.LiteralType:
		if s, ok := n.(*ast.LiteralNode); ok && s.Value != nil {
			return strconv.Quote(s.Value.Value)
		}
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return "a " + n.Type().YAMLName()
}
