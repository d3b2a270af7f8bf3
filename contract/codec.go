package contract

import (
	"encoding/json"
	"errors"
	"fmt"
)

// MaxPayloadSize is the largest record payload, in bytes, that DecodeRecord and
// DecodeGatewayRecord accept and that EncodeRecord produces (64 KiB).
const MaxPayloadSize = 64 << 10

// Gateway states of GatewayRecord.State (docs/contract.md, "Gateway record").
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// Errors wrapped by the codec functions; test with errors.Is.
var (
	// ErrPayloadTooLarge: a payload is over MaxPayloadSize.
	ErrPayloadTooLarge = errors.New("MQTT payload larger than 64 KiB")
	// ErrSchema: an instance record whose "schema" is not Schema.
	ErrSchema = errors.New("unknown record schema")
	// ErrInvalidRecord: a record that is not JSON or lacks a required field.
	ErrInvalidRecord = errors.New("invalid record")
)

// DecodeRecord decodes the payload of an instance topic (docs/contract.md, "Instance
// record"). An empty payload returns (nil, nil): the instance is deregistered. Unknown
// JSON fields are ignored. Errors (wrapped, see errors.Is): ErrPayloadTooLarge over
// MaxPayloadSize; ErrInvalidRecord for bad JSON or an empty id, service or gateway;
// ErrSchema when "schema" is not "rollcall.instance/v1".
func DecodeRecord(payload []byte) (*Record, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	if len(payload) > MaxPayloadSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(payload))
	}
	var rec Record
	if err := json.Unmarshal(payload, &rec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	if rec.Schema != Schema {
		return nil, fmt.Errorf("%w %q (want %q)", ErrSchema, rec.Schema, Schema)
	}
	if err := checkRecordIDs(&rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// EncodeRecord returns the JSON payload of an instance record. An empty Schema is set
// to Schema; any other schema is an ErrSchema error. Empty ID, Service or
// Gateway give ErrInvalidRecord; a payload over MaxPayloadSize gives
// ErrPayloadTooLarge (readers would reject it).
func EncodeRecord(rec Record) ([]byte, error) {
	switch rec.Schema {
	case "":
		rec.Schema = Schema
	case Schema:
	default:
		return nil, fmt.Errorf("%w %q (want %q)", ErrSchema, rec.Schema, Schema)
	}
	if err := checkRecordIDs(&rec); err != nil {
		return nil, err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: instance %q: %w", ErrInvalidRecord, rec.ID, err)
	}
	if len(b) > MaxPayloadSize {
		return nil, fmt.Errorf("%w: instance %q: %d bytes", ErrPayloadTooLarge, rec.ID, len(b))
	}
	return b, nil
}

func checkRecordIDs(rec *Record) error {
	switch {
	case rec.ID == "":
		return fmt.Errorf("%w: empty id", ErrInvalidRecord)
	case rec.Service == "":
		return fmt.Errorf("%w: instance %q: empty service", ErrInvalidRecord, rec.ID)
	case rec.Gateway == "":
		return fmt.Errorf("%w: instance %q: empty gateway", ErrInvalidRecord, rec.ID)
	}
	return nil
}

// DecodeGatewayRecord decodes the payload of a gateway status topic. An empty payload
// returns (nil, nil) (the status was cleared). Unknown fields are ignored. Errors:
// ErrPayloadTooLarge; ErrInvalidRecord for bad JSON, an empty gateway, or a state
// other than StateOnline/StateOffline.
func DecodeGatewayRecord(payload []byte) (*GatewayRecord, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	if len(payload) > MaxPayloadSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(payload))
	}
	var g GatewayRecord
	if err := json.Unmarshal(payload, &g); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	if g.Gateway == "" {
		return nil, fmt.Errorf("%w: gateway record without gateway", ErrInvalidRecord)
	}
	if g.State != StateOnline && g.State != StateOffline {
		return nil, fmt.Errorf("%w: gateway %q: state %q", ErrInvalidRecord, g.Gateway, g.State)
	}
	return &g, nil
}

// EncodeGatewayRecord returns the JSON payload of a gateway status record. Errors:
// ErrInvalidRecord for an empty Gateway or a State other than StateOnline/StateOffline.
func EncodeGatewayRecord(g GatewayRecord) ([]byte, error) {
	if g.Gateway == "" {
		return nil, fmt.Errorf("%w: gateway record without gateway", ErrInvalidRecord)
	}
	if g.State != StateOnline && g.State != StateOffline {
		return nil, fmt.Errorf("%w: gateway %q: state %q", ErrInvalidRecord, g.Gateway, g.State)
	}
	b, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("%w: gateway %q: %w", ErrInvalidRecord, g.Gateway, err)
	}
	return b, nil
}
