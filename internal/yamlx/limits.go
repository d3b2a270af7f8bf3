package yamlx

import (
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/goccy/go-yaml/token"
)

// Limits on what Decode reads. No rollcall file comes near them (a gateway config of a
// large cell is tens of KiB, nests 8 levels, and its largest mapping has a few dozen
// keys); they bound the time and memory one file can take, so a wrong or hostile file
// is refused in well under a second instead of stalling a start for minutes. Each
// refusal is an *Error at the place the limit is crossed.
const (
	// MaxDocumentBytes is the largest document Decode parses, in bytes (1 MiB).
	// goccy/go-yaml allocates up to about 800 bytes per byte of YAML while parsing (a
	// flow list of one-letter items; measured with v1.19.2), so at this size a parse
	// takes up to about 0.3 GB briefly. Callers that read files should refuse them
	// before reading, with ReadFile and a limit of at most this.
	MaxDocumentBytes = 1 << 20

	// MaxMappingKeys is the most keys one block mapping may have. goccy/go-yaml
	// v1.19.2 parses a block mapping recursively, one level per key, copying the keys
	// parsed so far at every level: time and memory grow with the square of the keys of
	// one mapping (1 MiB of keys in one mapping: 6.6 s and 2.7 GB allocated; the fix
	// upstream, github.com/goccy/go-yaml pull 889, is not released). With at most 256
	// keys per mapping the cost stays linear in the size of the file.
	MaxMappingKeys = 256

	// MaxDepth is the deepest nesting of mappings and lists. goccy/go-yaml parses
	// nesting recursively, at a cost that grows with the square of the depth (80 KB of
	// "[" took 7 s and 3.3 GB with v1.19.2).
	MaxDepth = 64

	// maxDocumentMarkers is the most document markers ("---", "...") read: one
	// document needs at most two. goccy/go-yaml splits documents recursively, at a
	// cost quadratic in their number.
	maxDocumentMarkers = 8
)

// ReadFile reads the file at path for Decode, refusing it without reading it when it is
// larger than limit bytes: its size is checked with Stat first, and the read is cut off
// at limit+1 bytes for a file whose size Stat does not give (a pipe, a device, a file
// that grows). A file too large is an *Error naming path, its size and the limit, what
// being the kind of file ("a gateway config") for the message; other errors are those of
// package os (*fs.PathError), unwrapped.
func ReadFile(path string, limit int64, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path, limit, what)
}

// ReadFileFS is ReadFile for the file name of fsys (e.g. a profile directory or the
// profiles embedded in the binary); the *Error names file, as the caller names the file
// in its other errors.
func ReadFileFS(fsys fs.FS, name, file string, limit int64, what string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, file, limit, what)
}

// readLimited reads f (named file in errors), at most limit bytes.
func readLimited(f fs.File, file string, limit int64, what string) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() && fi.Size() > limit {
		return nil, tooLarge(file, fi.Size(), limit, what)
	}
	n := int64(512)
	if fi.Mode().IsRegular() {
		n = fi.Size() + 1
	}
	buf := make([]byte, 0, n)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if int64(len(buf)) > limit {
			return nil, tooLarge(file, -1, limit, what)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// tooLarge is the *Error of a file of size bytes (-1: more than limit, size unknown)
// over limit.
func tooLarge(file string, size, limit int64, what string) *Error {
	got := "more than " + sizeText(limit)
	if size >= 0 {
		got = sizeText(size)
	}
	return &Error{File: file, Msg: fmt.Sprintf("the file is %s; %s is at most %s (is this the right file?)", got, what, sizeText(limit))}
}

// sizeText writes a byte count for people: "5242880 bytes (5.0 MiB)", "900 bytes".
func sizeText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d bytes (%.1f KiB)", n, float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// checkShape refuses, before goccy/go-yaml parses them, token streams that would make
// its parser slow (see MaxMappingKeys, MaxDepth, maxDocumentMarkers), in one pass.
//
// Block structure is followed by columns: a key (the token starting its line, or
// following a "- " entry, before a ":" outside flow collections; or an explicit "? "
// key) or a "- " entry at column c belongs to the open level at c, or opens one; a line
// starting at column c closes the levels deeper than c. The depth is the open levels
// plus the open flow collections. This follows what the parser does closely enough to
// bound it: sibling keys share their column.
func checkShape(file string, tokens token.Tokens) *Error {
	type level struct{ col, keys int }
	var open []level
	flow, markers, line, keyCol := 0, 0, 0, 0
	explicit := false // a "? " key whose ":" is not to be counted again
	fail := func(tk *token.Token, format string, args ...any) *Error {
		e := &Error{File: file, Msg: fmt.Sprintf(format, args...)}
		e.Line, e.Column = tokenPos(tk)
		return e
	}
	tooDeep := func(tk *token.Token) *Error {
		return fail(tk, "nested more than %d levels deep (the limit; a rollcall file nests at most 8)", MaxDepth)
	}
	// at returns the level at column col, opening it if needed; nil when too deep.
	at := func(col int) *level {
		for len(open) > 0 && open[len(open)-1].col > col {
			open = open[:len(open)-1]
		}
		if len(open) == 0 || open[len(open)-1].col < col {
			if len(open)+flow >= MaxDepth {
				return nil
			}
			open = append(open, level{col: col})
		}
		return &open[len(open)-1]
	}
	for _, tk := range tokens {
		if tk.Type == token.CommentType || tk.Position == nil {
			continue
		}
		col := tk.Position.Column
		first := tk.Position.Line != line
		line = tk.Position.Line
		if first {
			keyCol = col
			if flow == 0 {
				for len(open) > 0 && open[len(open)-1].col > col {
					open = open[:len(open)-1]
				}
			}
		} else if keyCol < 0 {
			keyCol = col
		}
		switch tk.Type {
		case token.DocumentHeaderType, token.DocumentEndType:
			if markers++; markers > maxDocumentMarkers {
				return fail(tk, "only one YAML document is allowed (this file has more than %d document markers --- or ...)", maxDocumentMarkers)
			}
			open, flow = open[:0], 0
		case token.SequenceStartType, token.MappingStartType:
			if flow++; len(open)+flow > MaxDepth {
				return tooDeep(tk)
			}
		case token.SequenceEndType, token.MappingEndType:
			if flow > 0 {
				flow--
			}
		case token.SequenceEntryType:
			if flow == 0 {
				if at(col) == nil {
					return tooDeep(tk)
				}
				keyCol = -1 // the entry's content starts at the next token
			}
		case token.MappingKeyType, token.MappingValueType:
			if flow > 0 {
				continue
			}
			kc := keyCol
			switch {
			case tk.Type == token.MappingKeyType:
				kc, explicit = col, true
			case explicit || first:
				explicit = false
				continue
			}
			lv := at(kc)
			if lv == nil {
				return tooDeep(tk)
			}
			if lv.keys++; lv.keys > MaxMappingKeys {
				e := fail(tk, "more than %d keys in one mapping (the limit; no rollcall file needs that many)", MaxMappingKeys)
				e.Column = kc
				return e
			}
			keyCol = -1
		}
	}
	return nil
}
