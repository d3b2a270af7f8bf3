package dnsname

import "testing"

// TestFold: ASCII letters fold, every other byte (digits, '-', '.', escapes, UTF-8) is
// kept, and the length never changes.
func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"Servo-Drive.Service.X.": "servo-drive.service.x.",
		"already.lower":          "already.lower",
		"Ünïcode-A":              "Ünïcode-a",
		`Esc\.ape`:               `esc\.ape`,
	} {
		if got := Fold(in); got != want || len(got) != len(in) {
			t.Errorf("Fold(%q) = %q, want %q", in, got, want)
		}
	}
}
