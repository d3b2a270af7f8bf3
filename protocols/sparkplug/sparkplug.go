// Package sparkplug is the Sparkplug B 3.0 payload codec and topic helpers (Eclipse
// Sparkplug 3.0.0): the protobuf Payload of sparkplug_b.proto (§6.4.1) with typed metric
// constructors, deterministic encoding and a size-capped decoder, the topic namespace
// (§4.1) and the JSON STATE message of host applications (§4.2.3).
//
// Section numbers (§) refer to the Eclipse Sparkplug 3.0.0 specification.
package sparkplug

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// Namespace is the first topic element of every Sparkplug B topic (§4.1.1).
const Namespace = "spBv1.0"

// MessageType is the message_type topic element (§4.1.3) of an edge node or device
// message. STATE, the host application's message, has a topic of its own: see
// StateTopic.
type MessageType string

// The message types of edge nodes (N…) and devices (D…), §4.1.3 and §4.2.1–§4.2.2.
const (
	NBIRTH MessageType = "NBIRTH" // edge node birth certificate (§4.2.1)
	NDEATH MessageType = "NDEATH" // edge node death certificate (§4.2.1)
	DBIRTH MessageType = "DBIRTH" // device birth certificate (§4.2.2)
	DDEATH MessageType = "DDEATH" // device death certificate (§4.2.2)
	NDATA  MessageType = "NDATA"  // edge node data (§4.2.1)
	DDATA  MessageType = "DDATA"  // device data (§4.2.2)
	NCMD   MessageType = "NCMD"   // command to an edge node (§4.2.1)
	DCMD   MessageType = "DCMD"   // command to a device (§4.2.2)
)

// device reports whether t is a device message type, whose topic ends with a device_id
// (§4.1.5: required for DBIRTH, DDEATH, DDATA, DCMD; forbidden for the others), and
// known whether t is one of the eight types at all.
func (t MessageType) device() (device, known bool) {
	switch t {
	case NBIRTH, NDEATH, NDATA, NCMD:
		return false, true
	case DBIRTH, DDEATH, DDATA, DCMD:
		return true, true
	}
	return false, false
}

// DataType is a Sparkplug datatype number (§6.4.16), the value of Metric.datatype,
// PropertyValue.type, DataSet.types and Template.Parameter.type. §6.4.17 says which
// value field holds each.
type DataType uint32

// The datatypes of §6.4.16 (basic, additional metric and PropertyValue types). The
// array types (22–34, little-endian packed into bytes_value) have no constants here.
const (
	Unknown         DataType = 0  // placeholder; not valid in a birth
	Int8            DataType = 1  // int_value, two's complement
	Int16           DataType = 2  // int_value, two's complement
	Int32           DataType = 3  // int_value, two's complement
	Int64           DataType = 4  // long_value, two's complement
	UInt8           DataType = 5  // int_value
	UInt16          DataType = 6  // int_value
	UInt32          DataType = 7  // int_value
	UInt64          DataType = 8  // long_value
	Float           DataType = 9  // float_value
	Double          DataType = 10 // double_value
	Boolean         DataType = 11 // boolean_value
	String          DataType = 12 // string_value, UTF-8
	DateTime        DataType = 13 // long_value, ms since the Unix epoch, UTC
	Text            DataType = 14 // string_value, UTF-8
	UUID            DataType = 15 // string_value
	DataSet         DataType = 16 // dataset_value
	Bytes           DataType = 17 // bytes_value
	File            DataType = 18 // bytes_value (name and type in MetaData)
	Template        DataType = 19 // template_value
	PropertySet     DataType = 20 // PropertyValue.propertyset_value
	PropertySetList DataType = 21 // PropertyValue.propertysets_value
)

var dataTypeNames = [...]string{
	"Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
	"Float", "Double", "Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes",
	"File", "Template", "PropertySet", "PropertySetList",
}

// String is the §6.4.16 name of d, or "DataType(n)" for a number without a constant.
func (d DataType) String() string {
	if int(d) < len(dataTypeNames) {
		return dataTypeNames[d]
	}
	return "DataType(" + strconv.FormatUint(uint64(d), 10) + ")"
}

// ErrInvalidID is returned (wrapped) by ValidID.
var ErrInvalidID = errors.New("sparkplug: invalid id")

// ValidID checks a group_id, edge_node_id, device_id (§4.1.2, §4.1.4, §4.1.5) or
// Sparkplug host id (§4.2.3): a non-empty UTF-8 string without the reserved characters
// '/', '+' and '#'. U+0000 is refused too, as MQTT forbids it in topic names (MQTT 3.1.1
// §1.5.3, MQTT 5.0 §1.5.4).
func ValidID(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidID, s)
	}
	if i := strings.IndexAny(s, "/+#\x00"); i >= 0 {
		return fmt.Errorf("%w %q: reserved character %q", ErrInvalidID, s, s[i])
	}
	return nil
}

// Topic is the topic of an edge node or device message (§4.1):
// spBv1.0/<group>/<type>/<node>, followed by /<device> when device is not empty. It
// does not check its arguments: the ids must pass ValidID, and device must be set
// exactly for the D… types (§4.1.5), which ParseTopic(Topic(…)) confirms.
func Topic(t MessageType, group, node, device string) string {
	s := Namespace + "/" + group + "/" + string(t) + "/" + node
	if device != "" {
		s += "/" + device
	}
	return s
}

// StateTopic is the topic of a Sparkplug host application's STATE birth and death
// certificates, spBv1.0/STATE/<host id> (§4.2.3.1, §4.2.3.2; Sparkplug 3.0 form).
func StateTopic(hostID string) string {
	return Namespace + "/STATE/" + hostID
}

// ParseTopic splits an edge node or device topic (§4.1). ok is false unless the topic
// is exactly spBv1.0/<group>/<type>/<node> for NBIRTH, NDEATH, NDATA, NCMD or
// spBv1.0/<group>/<type>/<node>/<device> for DBIRTH, DDEATH, DDATA, DCMD (§4.1.5),
// with every id valid (ValidID). STATE topics are not edge node topics: see
// ParseStateTopic.
func ParseTopic(topic string) (t MessageType, group, node, device string, ok bool) {
	parts := strings.Split(topic, "/")
	if len(parts) < 4 || len(parts) > 5 || parts[0] != Namespace {
		return "", "", "", "", false
	}
	t = MessageType(parts[2])
	isDevice, known := t.device()
	if !known || isDevice != (len(parts) == 5) {
		return "", "", "", "", false
	}
	for i, id := range parts[1:] {
		if i != 1 && ValidID(id) != nil { // parts[2], the type, is known already
			return "", "", "", "", false
		}
	}
	group, node = parts[1], parts[3]
	if isDevice {
		device = parts[4]
	}
	return t, group, node, device, true
}

// ParseStateTopic returns the host id of a STATE topic, spBv1.0/STATE/<host id>
// (§4.2.3.1); ok is false for any other topic or an invalid host id (ValidID).
func ParseStateTopic(topic string) (hostID string, ok bool) {
	hostID, ok = strings.CutPrefix(topic, Namespace+"/STATE/")
	if !ok || ValidID(hostID) != nil {
		return "", false
	}
	return hostID, true
}

// State is the JSON payload of a host application's STATE message (§4.2.3.1.2 birth,
// §4.2.3.2.2 death): online is true in the birth, false in the death (the MQTT will);
// Timestamp is milliseconds since the Unix epoch, UTC.
type State struct {
	Online    bool  `json:"online"`
	Timestamp int64 `json:"timestamp"`
}

// ErrBadState is returned (wrapped) by ParseState.
var ErrBadState = errors.New("sparkplug: bad STATE payload")

// ParseState decodes a STATE payload (§4.2.3.1.2, §4.2.3.2.2): a JSON object whose key
// "online" is a boolean and whose key "timestamp" is a non-negative integer (ms since
// the epoch, UTC); both are required, keys match exactly, other keys are ignored.
func ParseState(b []byte) (State, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	if obj == nil {
		return State{}, fmt.Errorf("%w: not a JSON object", ErrBadState)
	}
	var s State
	switch on := string(bytes.TrimSpace(obj["online"])); on {
	case "true", "false":
		s.Online = on == "true"
	case "":
		return State{}, fmt.Errorf("%w: no \"online\"", ErrBadState)
	default:
		return State{}, fmt.Errorf("%w: \"online\" is %s, not a boolean", ErrBadState, on)
	}
	ts := string(bytes.TrimSpace(obj["timestamp"]))
	if ts == "" {
		return State{}, fmt.Errorf("%w: no \"timestamp\"", ErrBadState)
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n < 0 {
		return State{}, fmt.Errorf("%w: \"timestamp\" is %s, not milliseconds since the epoch", ErrBadState, ts)
	}
	s.Timestamp = n
	return s, nil
}

// metric is a metric with name and datatype set (§6.4.6).
func metric(name string, dt DataType) *Payload_Metric {
	return &Payload_Metric{Name: proto.String(name), Datatype: proto.Uint32(uint32(dt))}
}

// StringMetric is a String metric (§6.4.17: string_value). Like every constructor here
// it leaves timestamp and alias unset: births and data messages need the timestamp
// (§6.4.6), which the caller adds.
func StringMetric(name, v string) *Payload_Metric {
	m := metric(name, String)
	m.Value = &Payload_Metric_StringValue{StringValue: v}
	return m
}

// BoolMetric is a Boolean metric (§6.4.17: boolean_value).
func BoolMetric(name string, v bool) *Payload_Metric {
	m := metric(name, Boolean)
	m.Value = &Payload_Metric_BooleanValue{BooleanValue: v}
	return m
}

// UInt64Metric is a UInt64 metric (§6.4.17: long_value).
func UInt64Metric(name string, v uint64) *Payload_Metric {
	m := metric(name, UInt64)
	m.Value = &Payload_Metric_LongValue{LongValue: v}
	return m
}

// UInt32Metric is a UInt32 metric (§6.4.17: int_value).
func UInt32Metric(name string, v uint32) *Payload_Metric {
	m := metric(name, UInt32)
	m.Value = &Payload_Metric_IntValue{IntValue: v}
	return m
}

// Int64Metric is an Int64 metric (§6.4.17): the two's-complement bits of v in
// long_value, so -1 travels as 0xFFFFFFFFFFFFFFFF.
func Int64Metric(name string, v int64) *Payload_Metric {
	m := metric(name, Int64)
	m.Value = &Payload_Metric_LongValue{LongValue: uint64(v)}
	return m
}

// DoubleMetric is a Double metric (§6.4.17: double_value).
func DoubleMetric(name string, v float64) *Payload_Metric {
	m := metric(name, Double)
	m.Value = &Payload_Metric_DoubleValue{DoubleValue: v}
	return m
}

// DateTimeMetric is a DateTime metric (§6.4.17): t in milliseconds since the Unix epoch,
// UTC, in long_value (sub-millisecond precision is dropped). The specification's field
// is unsigned; a time before 1970 is sent as the two's-complement bits of its negative
// count, which MetricValue reads back.
func DateTimeMetric(name string, t time.Time) *Payload_Metric {
	m := metric(name, DateTime)
	m.Value = &Payload_Metric_LongValue{LongValue: uint64(t.UnixMilli())}
	return m
}

// NullMetric is a metric of datatype dt whose value is null: is_null set, no value
// field (§6.4.6).
func NullMetric(name string, dt DataType) *Payload_Metric {
	m := metric(name, dt)
	m.IsNull = proto.Bool(true)
	return m
}

// WithProperties sets m's properties (§6.4.8) to kv, each a String PropertyValue
// (§6.4.9), keys in sorted order so that encoding is reproducible. It replaces any
// properties m had; an empty kv removes them. It returns m.
func WithProperties(m *Payload_Metric, kv map[string]string) *Payload_Metric {
	if len(kv) == 0 {
		m.Properties = nil
		return m
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ps := &Payload_PropertySet{Keys: keys, Values: make([]*Payload_PropertyValue, len(keys))}
	for i, k := range keys {
		ps.Values[i] = &Payload_PropertyValue{
			Type:  proto.Uint32(uint32(String)),
			Value: &Payload_PropertyValue_StringValue{StringValue: kv[k]},
		}
	}
	m.Properties = ps
	return m
}

// MaxPayloadBytes caps an encoded payload, both ways: Decode refuses larger input and
// Encode larger output. The specification sets no limit (§6.4.5); this one keeps a
// hostile publisher from making rollcall allocate without bound.
const MaxPayloadBytes = 1 << 20

// ErrTooLarge is returned (wrapped) by Encode and Decode for payloads over
// MaxPayloadBytes.
var ErrTooLarge = errors.New("sparkplug: payload over MaxPayloadBytes")

// Encode marshals p (§6.4.5) deterministically: the same message always gives the same
// bytes. An empty payload encodes to zero bytes, which is valid (e.g. a DDEATH).
func Encode(p *Payload) ([]byte, error) {
	if p == nil {
		return nil, errors.New("sparkplug: Encode of a nil payload")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("sparkplug: encode: %w", err)
	}
	if len(b) > MaxPayloadBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	return b, nil
}

// Decode unmarshals a Sparkplug B payload (§6.4.5), refusing input over
// MaxPayloadBytes. It checks the protobuf wire format only: Sparkplug rules such as seq
// being present or keys and values of a PropertySet being as many are the caller's.
func Decode(b []byte) (*Payload, error) {
	if len(b) > MaxPayloadBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	p := new(Payload)
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("sparkplug: decode: %w", err)
	}
	return p, nil
}

// MetricValue is the Go value of m according to its datatype (§6.4.17): string for
// String, Text and UUID; bool for Boolean; int64 for Int8–Int64 (sign-extended from the
// type's width); uint64 for UInt8–UInt64; float64 for Float and Double; time.Time (UTC)
// for DateTime; []byte for Bytes and File; *Payload_DataSet and *Payload_Template for
// those types; nil when is_null is set or m has no value. See MetricValueAs for metrics
// without a datatype.
func MetricValue(m *Payload_Metric) any {
	return MetricValueAs(m, DataType(m.GetDatatype()))
}

// MetricValueAs is MetricValue with datatype dt, for NDATA, DDATA and command metrics,
// which do not repeat the datatype given in the birth (§6.4.6). When dt is Unknown or
// does not match the value field, the value field is returned as it is: uint32 values
// and long_value as uint64, float as float64, and so on.
func MetricValueAs(m *Payload_Metric, dt DataType) any {
	if m.GetIsNull() {
		return nil
	}
	switch v := m.GetValue().(type) {
	case *Payload_Metric_IntValue:
		switch dt {
		case Int8:
			return int64(int8(v.IntValue))
		case Int16:
			return int64(int16(v.IntValue))
		case Int32:
			return int64(int32(v.IntValue))
		}
		return uint64(v.IntValue)
	case *Payload_Metric_LongValue:
		switch dt {
		case Int64:
			return int64(v.LongValue)
		case DateTime:
			return time.UnixMilli(int64(v.LongValue)).UTC()
		}
		return v.LongValue
	case *Payload_Metric_FloatValue:
		return float64(v.FloatValue)
	case *Payload_Metric_DoubleValue:
		return v.DoubleValue
	case *Payload_Metric_BooleanValue:
		return v.BooleanValue
	case *Payload_Metric_StringValue:
		return v.StringValue
	case *Payload_Metric_BytesValue:
		return v.BytesValue
	case *Payload_Metric_DatasetValue:
		return v.DatasetValue
	case *Payload_Metric_TemplateValue:
		return v.TemplateValue
	case *Payload_Metric_ExtensionValue:
		return v.ExtensionValue
	}
	return nil
}
