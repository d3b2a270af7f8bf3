// Package configs ships rollcall's sample configurations and device profiles. The
// profiles are embedded in the binary so that one binary and one YAML file are enough
// on an edge box; profiles.dirs in the gateway config adds or replaces them.
package configs

import "embed"

// Profiles holds profiles/*.yaml, the shipped device profiles.
//
//go:embed profiles/*.yaml
var Profiles embed.FS

// GatewaySample is configs/gateway.yaml, the commented sample gateway config that
// `rollcall config` prints.
//
//go:embed gateway.yaml
var GatewaySample []byte
