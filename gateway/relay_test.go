package gateway

import (
	"testing"
	"time"
)

// TestBusBudget: routed requests run back to back until they are relayBurst ahead of
// their share, then take the share over time: a client hammering the bus gets share of
// it, within a burst's worth; a pause refills the budget.
func TestBusBudget(t *testing.T) {
	const share = 0.5
	var b busBudget
	t0 := time.Unix(1000, 0)
	now := t0
	// A full budget: back to back until they are relayBurst ahead of their share, which
	// takes relayBurst / (1 − share) of bus time.
	for b.positiveAt(now, share).Equal(now) {
		if now.Sub(t0) > time.Minute {
			t.Fatal("the budget never holds back routed requests back to back")
		}
		b.spend(now, now.Add(10*time.Millisecond), share)
		now = now.Add(10 * time.Millisecond)
	}
	if got, want := now.Sub(t0), time.Duration(float64(relayBurst)/(1-share)); got < want || got > want+10*time.Millisecond {
		t.Errorf("back to back for %v of bus time before the share held them back, want %v", got, want)
	}
	// Hammering for 10 s: the routed share of the time tends to share.
	busy := now.Sub(t0)
	for now.Sub(t0) < 10*time.Second {
		now = b.positiveAt(now, share)
		b.spend(now, now.Add(7*time.Millisecond), share)
		now = now.Add(7 * time.Millisecond)
		busy += 7 * time.Millisecond
	}
	got := float64(busy) / float64(now.Sub(t0))
	limit := share + float64(2*relayBurst+7*time.Millisecond)/float64(now.Sub(t0))
	if got > limit || got < share-0.01 {
		t.Errorf("routed share over %v of hammering: %.3f, want %.2f (at most %.3f with the burst)", now.Sub(t0), got, share, limit)
	}
	// Idle time refills it: after relayBurst/share, back to back again.
	now = now.Add(time.Duration(float64(relayBurst) / share))
	if next := b.positiveAt(now, share); !next.Equal(now) {
		t.Errorf("after a pause the budget still holds back until %v", next.Sub(now))
	}
}
