package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shapes are config texts of a given size in bytes (exactly), of the forms that made a
// YAML loader slow, each valid or refused whatever its size.
var shapes = []struct {
	name  string
	gen   func(size int) []byte
	valid bool
}{
	{"config", genConfig, true},           // buses of 247 units with meta: a large cell
	{"comments", genComments, true},       // one key, then comment lines
	{"meta-256", genMeta256, true},        // buses with 256 meta keys each (yamlx.MaxMappingKeys)
	{"anchors", genAnchors, true},         // a list of anchors and aliases of one name
	{"one-mapping", genOneMapping, false}, // every key in one mapping: refused at key 257
	{"merge-chain", genMergeChain, false}, // mappings each merging the one before: refused by the value budget
}

// pad fills b with a comment line (or a newline) to size bytes; b must not be longer.
func pad(b *strings.Builder, size int) []byte {
	switch rem := size - b.Len(); {
	case rem == 1:
		b.WriteString("\n")
	case rem >= 2:
		b.WriteString("#" + strings.Repeat("x", rem-2) + "\n")
	}
	return []byte(b.String())
}

// fill appends chunk(i) for i = 0, 1, … while the text stays within size, keeping
// reserve bytes free; then it pads to size.
func fill(b *strings.Builder, size, reserve int, chunk func(i int) string) []byte {
	for i := 0; ; i++ {
		c := chunk(i)
		if b.Len()+len(c)+reserve > size {
			break
		}
		b.WriteString(c)
	}
	return pad(b, size)
}

// genConfig is a valid gateway config: buses of 247 units, each unit with its meta.
func genConfig(size int) []byte {
	var b strings.Builder
	b.WriteString("gateway: {id: cell2-gw}\nhealth: {poll_interval: 100ms}\ndiscovery:\n  serial:\n")
	return fill(&b, size, 0, func(i int) string {
		bus, unit := i/248, i%248
		if unit == 0 {
			return fmt.Sprintf("    - name: bus%04d\n      device: /dev/ttyRS%04d\n      baud: 115200\n      units: \"1-247\"\n"+
				"      meta: {cell: \"2\", line: \"A\"}\n      devices:\n", bus, bus)
		}
		return fmt.Sprintf("        - {unit: %d, meta: {axis: \"%d\", group: A}}\n", unit, unit)
	})
}

func genComments(size int) []byte {
	var b strings.Builder
	b.WriteString("gateway: {id: gw}\n")
	return fill(&b, size, 0, func(int) string { return "# a comment line of some length, as an engineer would write it\n" })
}

func genMeta256(size int) []byte {
	var b strings.Builder
	b.WriteString("discovery:\n  serial:\n")
	return fill(&b, size, 0, func(i int) string {
		bus, key := i/257, i%257
		if key == 0 {
			return fmt.Sprintf("    - name: bus%04d\n      device: /dev/ttyRS%04d\n      meta:\n", bus, bus)
		}
		return fmt.Sprintf("        key%03d: value\n", key)
	})
}

func genAnchors(size int) []byte {
	var b strings.Builder
	b.WriteString("discovery:\n  mdns:\n    interfaces:\n")
	return fill(&b, size, 0, func(int) string { return "    - &a eth0\n    - *a\n" })
}

func genOneMapping(size int) []byte {
	var b strings.Builder
	b.WriteString("discovery:\n  serial:\n    - name: b\n      device: /dev/x\n      meta:\n")
	return fill(&b, size, 0, func(i int) string { return fmt.Sprintf("        key_%07d: \"value value value\"\n", i) })
}

func genMergeChain(size int) []byte {
	var b strings.Builder
	b.WriteString("x:\n  - &a0 {k0: v}\n")
	n := 0
	tail := func(n int) string {
		return fmt.Sprintf("discovery: {serial: [{name: b, device: /d, meta: *a%d}]}\n", n)
	}
	fill(&b, size, len(tail(1<<30)), func(i int) string {
		n = i + 1
		return fmt.Sprintf("  - &a%d {<<: *a%d, k%d: v}\n", i+1, i, i+1)
	})
	text := b.String()
	text = text[:strings.LastIndex(text, "#")] // fill padded: take the padding off
	b.Reset()
	b.WriteString(text + tail(n-1))
	return pad(&b, size)
}

// BenchmarkLoadConfig: Load (read, parse, validate) of configs of each shape at 0.1,
// 0.5 and 1 MiB (MaxConfigBytes, the limit), and of a 5 MiB file (refused from its
// size). With goccy/go-yaml v1.19.2 and yamlx's limits the time and the bytes allocated
// per op grow linearly with the size for every shape.
func BenchmarkLoadConfig(b *testing.B) {
	sizes := []struct {
		name string
		size int
	}{{"0.1MiB", MaxConfigBytes / 10}, {"0.5MiB", MaxConfigBytes / 2}, {"1MiB", MaxConfigBytes}}
	for _, s := range shapes {
		for _, sz := range sizes {
			b.Run(s.name+"/"+sz.name, func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "gw.yaml")
				if err := os.WriteFile(path, s.gen(sz.size), 0o644); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(sz.size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Load(path); (err == nil) != s.valid {
						b.Fatalf("error %.300v", err)
					}
				}
			})
		}
	}
	b.Run("oversize/5MiB", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "gw.yaml")
		if err := os.WriteFile(path, genComments(5<<20), 0o644); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Load(path); err == nil {
				b.Fatal("a 5 MiB config loaded")
			}
		}
	})
}
