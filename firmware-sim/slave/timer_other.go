//go:build !linux

package slave

// newWakeTimer returns the wake-up timer of this platform: a runtime timer that wakes
// spinWindow early, then a spin (spinTimer).
func newWakeTimer() (wakeTimer, error) { return newSpinTimer(), nil }
