package contract_test

import (
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/contract"
)

func TestLeaseExpired(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	until := contract.Time{Time: t0}
	tests := []struct {
		name  string
		lease contract.Lease
		valid contract.Time
		now   time.Time
		want  bool
	}{
		{"no lease never expires", contract.Lease{}, contract.Time{}, t0.Add(time.Hour), false},
		{"before valid_until", contract.Lease{}, until, t0.Add(-time.Second), false},
		{"within the default skew", contract.Lease{}, until, t0.Add(contract.DefaultMaxClockSkew), false},
		{"past the default skew", contract.Lease{}, until, t0.Add(contract.DefaultMaxClockSkew + time.Millisecond), true},
		{"custom skew", contract.Lease{MaxClockSkew: 3 * time.Second}, until, t0.Add(2 * time.Second), false},
		{"no skew", contract.Lease{MaxClockSkew: -1}, until, t0.Add(time.Millisecond), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.lease.Expired(tt.valid, tt.now); got != tt.want {
				t.Fatalf("Expired = %v, want %v", got, tt.want)
			}
			exp, ok := tt.lease.Expiry(tt.valid)
			if ok != !tt.valid.IsZero() || ok && exp.Before(tt.now) != tt.want {
				t.Fatalf("Expiry = %v, %v; inconsistent with Expired = %v at %v", exp, ok, tt.want, tt.now)
			}
		})
	}
}
