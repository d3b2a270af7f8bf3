package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test and example must leave no goroutine behind: the client's, paho's, the
// brokers' and the in-process gateways' and simulators'.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
