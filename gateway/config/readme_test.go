package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEWalkthrough: the configuration walkthrough in README.md is a valid config,
// so an engineer who copies it gets a gateway that starts.
func TestREADMEWalkthrough(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "## Configuration walkthrough")
	if !ok {
		t.Fatal(`README.md has no "## Configuration walkthrough"`)
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	yml, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in the walkthrough")
	}
	if _, err := Parse("README.md walkthrough", []byte(yml)); err != nil {
		t.Fatalf("the README's walkthrough config does not load:\n%v", err)
	}
}
