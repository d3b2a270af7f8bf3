package contract

import "time"

// DefaultMaxClockSkew is how far a reader's clock may be behind or ahead of a gateway's
// (typically NTP-synchronised clocks: well under a second) before leases are judged
// wrongly: a reader takes a record as expired only MaxClockSkew after its valid_until.
const DefaultMaxClockSkew = time.Second

// Lease is the liveness rule of the contract (docs/contract.md, "Leases"): a record is
// valid until its valid_until; a reader treats an instance as unknown, never live, when
// its own record's lease or its gateway's status lease has expired. A zero valid_until
// (a gateway without leases) never expires.
//
// Clock skew: valid_until is written by the gateway's clock and read by the reader's.
// Expired allows MaxClockSkew between them: a reader whose clock is ahead by less than
// that never drops a record that is renewed in time; one whose clock is behind by less
// than that notices a dead gateway at most MaxClockSkew late.
type Lease struct {
	// MaxClockSkew: see Lease; 0 means DefaultMaxClockSkew, a negative value none.
	MaxClockSkew time.Duration
}

// Expired reports whether a lease valid until validUntil has expired at now (the
// reader's clock).
func (l Lease) Expired(validUntil Time, now time.Time) bool {
	until, ok := l.Expiry(validUntil)
	return ok && now.After(until)
}

// Expiry returns the instant (on the reader's clock) at which a lease valid until
// validUntil expires: validUntil plus the clock-skew allowance; false for a lease that
// never expires (zero validUntil).
func (l Lease) Expiry(validUntil Time) (time.Time, bool) {
	if validUntil.IsZero() {
		return time.Time{}, false
	}
	skew := l.MaxClockSkew
	if skew == 0 {
		skew = DefaultMaxClockSkew
	}
	return validUntil.Add(max(skew, 0)), true
}
