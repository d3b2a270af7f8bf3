package sparkplug

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// samplePayload is an NBIRTH-like payload: timestamp, seq and one metric of each
// constructor, one with a PropertySet.
func samplePayload() *Payload {
	return &Payload{
		Timestamp: proto.Uint64(1700000000000),
		Seq:       proto.Uint64(7),
		Metrics: []*Payload_Metric{
			WithProperties(StringMetric("identity", "ACME X1 0042"), map[string]string{"vendor": "ACME", "model": "X1"}),
			BoolMetric("Node Control/Rebirth", false),
			UInt64Metric("bdSeq", 3),
			UInt32Metric("registers", 4000000000),
			Int64Metric("epoch", -1),
			DoubleMetric("temp", 21.5),
			DateTimeMetric("seen", time.UnixMilli(1700000000123)),
			NullMetric("fault", String),
		},
	}
}

func TestConstructorsRoundTrip(t *testing.T) {
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 2*3600))
	cases := []struct {
		m     *Payload_Metric
		dt    DataType
		value any
		field string // the oneof field set, "" for none
	}{
		{StringMetric("s", "héllo"), String, "héllo", "string_value"},
		{StringMetric("empty", ""), String, "", "string_value"},
		{BoolMetric("b", true), Boolean, true, "boolean_value"},
		{BoolMetric("f", false), Boolean, false, "boolean_value"},
		{UInt64Metric("u64", math.MaxUint64), UInt64, uint64(math.MaxUint64), "long_value"},
		{UInt32Metric("u32", math.MaxUint32), UInt32, uint64(math.MaxUint32), "int_value"},
		{Int64Metric("i64", math.MinInt64), Int64, int64(math.MinInt64), "long_value"},
		{Int64Metric("neg", -42), Int64, int64(-42), "long_value"},
		{Int64Metric("pos", 42), Int64, int64(42), "long_value"},
		{DoubleMetric("d", -1.25e-300), Double, -1.25e-300, "double_value"},
		{DoubleMetric("inf", math.Inf(1)), Double, math.Inf(1), "double_value"},
		{DateTimeMetric("dt", when), DateTime, when.Truncate(time.Millisecond).UTC(), "long_value"},
		{DateTimeMetric("old", time.UnixMilli(-86400000)), DateTime, time.UnixMilli(-86400000).UTC(), "long_value"},
		{NullMetric("null", Float), Float, nil, ""},
		{NullMetric("nulltpl", Template), Template, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.m.GetName(), func(t *testing.T) {
			b, err := Encode(&Payload{Metrics: []*Payload_Metric{c.m}})
			if err != nil {
				t.Fatal(err)
			}
			p, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Metrics) != 1 {
				t.Fatalf("%d metrics decoded", len(p.Metrics))
			}
			got := p.Metrics[0]
			if !proto.Equal(got, c.m) {
				t.Fatalf("decoded %v, encoded %v", got, c.m)
			}
			if DataType(got.GetDatatype()) != c.dt {
				t.Errorf("datatype %v, want %v", DataType(got.GetDatatype()), c.dt)
			}
			if c.dt == DateTime {
				if v, ok := MetricValue(got).(time.Time); !ok || !v.Equal(c.value.(time.Time)) || v.Location() != time.UTC {
					t.Errorf("value %#v, want %v in UTC", MetricValue(got), c.value)
				}
			} else if v := MetricValue(got); !reflect.DeepEqual(v, c.value) {
				t.Errorf("value %#v (%T), want %#v (%T)", v, v, c.value, c.value)
			}
			field := ""
			if od := got.ProtoReflect().WhichOneof(got.ProtoReflect().Descriptor().Oneofs().ByName("value")); od != nil {
				field = string(od.Name())
			}
			if field != c.field {
				t.Errorf("value in %q, want %q", field, c.field)
			}
			if got.GetIsNull() != (c.value == nil) {
				t.Errorf("is_null %v", got.GetIsNull())
			}
		})
	}
}

// TestWireBytes checks encodings worked out by hand from the field numbers and types
// of §6.4.1, independently of the generated code.
func TestWireBytes(t *testing.T) {
	cases := []struct {
		name string
		p    *Payload
		want []byte
	}{
		{"empty", &Payload{}, []byte{}},
		{"string metric", &Payload{Timestamp: proto.Uint64(1), Seq: proto.Uint64(2), Metrics: []*Payload_Metric{StringMetric("a", "x")}},
			[]byte{
				0x08, 0x01, // timestamp (1, varint) = 1
				0x12, 0x08, // metrics (2, bytes), 8 bytes
				0x0a, 0x01, 'a', // name (1) = "a"
				0x20, 0x0c, // datatype (4) = 12 String
				0x7a, 0x01, 'x', // string_value (15, bytes) = "x"
				0x18, 0x02, // seq (3) = 2
			}},
		{"Int64 -1", &Payload{Metrics: []*Payload_Metric{Int64Metric("i", -1)}},
			[]byte{
				0x12, 0x10,
				0x0a, 0x01, 'i',
				0x20, 0x04, // Int64
				0x58, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // long_value (11, varint)
			}},
		{"null, alias, properties", &Payload{Metrics: []*Payload_Metric{
			WithProperties(func() *Payload_Metric { m := NullMetric("n", Boolean); m.Alias = proto.Uint64(5); return m }(), map[string]string{"k": "v"}),
		}}, []byte{
			0x12, 0x15,
			0x0a, 0x01, 'n',
			0x10, 0x05, // alias (2)
			0x20, 0x0b, // datatype Boolean
			0x38, 0x01, // is_null (7) = true
			0x4a, 0x0a, // properties (9), 10 bytes
			0x0a, 0x01, 'k', // keys (1)
			0x12, 0x05, // values (2), 5 bytes
			0x08, 0x0c, // type (1) = String
			0x42, 0x01, 'v', // string_value (8)
		}},
		{"double, bool, uint32", &Payload{Metrics: []*Payload_Metric{DoubleMetric("d", 1), BoolMetric("b", true), UInt32Metric("u", 300)}},
			[]byte{
				0x12, 0x0e, 0x0a, 0x01, 'd', 0x20, 0x0a, 0x69, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // double_value (13, fixed64)
				0x12, 0x07, 0x0a, 0x01, 'b', 0x20, 0x0b, 0x70, 0x01, // boolean_value (14)
				0x12, 0x08, 0x0a, 0x01, 'u', 0x20, 0x07, 0x50, 0xac, 0x02, // int_value (10) = 300
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Encode(c.p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.want) {
				t.Fatalf("encoded\n% x\nwant\n% x", got, c.want)
			}
			back, err := Decode(c.want)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(back, c.p) {
				t.Fatalf("decoded %v, want %v", back, c.p)
			}
		})
	}
}

// TestSchemaMatchesSpec lists every field of the §6.4.1 schema (message, name, number,
// type, label, oneof) as the specification gives it and compares it with the compiled
// descriptor, so an edit of sparkplug_b.proto that changes the wire format fails here.
func TestSchemaMatchesSpec(t *testing.T) {
	want := `Payload: timestamp=1 uint64 optional; metrics=2 Metric repeated; seq=3 uint64 optional; uuid=4 string optional; body=5 bytes optional; ext 6-max
Payload.Template: version=1 string optional; metrics=2 Metric repeated; parameters=3 Parameter repeated; template_ref=4 string optional; is_definition=5 bool optional; ext 6-max
Payload.Template.Parameter: name=1 string optional; type=2 uint32 optional; int_value=3 uint32 oneof value; long_value=4 uint64 oneof value; float_value=5 float oneof value; double_value=6 double oneof value; boolean_value=7 bool oneof value; string_value=8 string oneof value; extension_value=9 ParameterValueExtension oneof value
Payload.Template.Parameter.ParameterValueExtension: ext 1-max
Payload.DataSet: num_of_columns=1 uint64 optional; columns=2 string repeated; types=3 uint32 repeated; rows=4 Row repeated; ext 5-max
Payload.DataSet.DataSetValue: int_value=1 uint32 oneof value; long_value=2 uint64 oneof value; float_value=3 float oneof value; double_value=4 double oneof value; boolean_value=5 bool oneof value; string_value=6 string oneof value; extension_value=7 DataSetValueExtension oneof value
Payload.DataSet.DataSetValue.DataSetValueExtension: ext 1-max
Payload.DataSet.Row: elements=1 DataSetValue repeated; ext 2-max
Payload.PropertyValue: type=1 uint32 optional; is_null=2 bool optional; int_value=3 uint32 oneof value; long_value=4 uint64 oneof value; float_value=5 float oneof value; double_value=6 double oneof value; boolean_value=7 bool oneof value; string_value=8 string oneof value; propertyset_value=9 PropertySet oneof value; propertysets_value=10 PropertySetList oneof value; extension_value=11 PropertyValueExtension oneof value
Payload.PropertyValue.PropertyValueExtension: ext 1-max
Payload.PropertySet: keys=1 string repeated; values=2 PropertyValue repeated; ext 3-max
Payload.PropertySetList: propertyset=1 PropertySet repeated; ext 2-max
Payload.MetaData: is_multi_part=1 bool optional; content_type=2 string optional; size=3 uint64 optional; seq=4 uint64 optional; file_name=5 string optional; file_type=6 string optional; md5=7 string optional; description=8 string optional; ext 9-max
Payload.Metric: name=1 string optional; alias=2 uint64 optional; timestamp=3 uint64 optional; datatype=4 uint32 optional; is_historical=5 bool optional; is_transient=6 bool optional; is_null=7 bool optional; metadata=8 MetaData optional; properties=9 PropertySet optional; int_value=10 uint32 oneof value; long_value=11 uint64 oneof value; float_value=12 float oneof value; double_value=13 double oneof value; boolean_value=14 bool oneof value; string_value=15 string oneof value; bytes_value=16 bytes oneof value; dataset_value=17 DataSet oneof value; template_value=18 Template oneof value; extension_value=19 MetricValueExtension oneof value
Payload.Metric.MetricValueExtension: ext 1-max`

	fd := File_sparkplug_b_proto
	if fd.Syntax() != protoreflect.Proto2 || fd.Package() != "org.eclipse.tahu.protobuf" {
		t.Fatalf("syntax %v, package %s; want proto2, org.eclipse.tahu.protobuf", fd.Syntax(), fd.Package())
	}
	if fd.Messages().Len() != 1 || fd.Enums().Len() != 0 || fd.Extensions().Len() != 0 || fd.Services().Len() != 0 {
		t.Fatalf("file declares more than the Payload message")
	}
	var lines []string
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		var parts []string
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			f := fields.Get(i)
			typ := f.Kind().String()
			if f.Message() != nil {
				typ = string(f.Message().Name())
			}
			label := "optional"
			switch {
			case f.ContainingOneof() != nil:
				label = "oneof " + string(f.ContainingOneof().Name())
			case f.Cardinality() == protoreflect.Repeated:
				label = "repeated"
				if f.IsPacked() {
					label += " packed"
				}
			case f.Cardinality() != protoreflect.Optional:
				label = f.Cardinality().String()
			}
			if f.HasDefault() {
				label += " default"
			}
			parts = append(parts, fmt.Sprintf("%s=%d %s %s", f.Name(), f.Number(), typ, label))
		}
		rs := md.ExtensionRanges()
		for i := 0; i < rs.Len(); i++ {
			r := rs.Get(i)
			end := fmt.Sprint(r[1] - 1)
			if r[1] == protoreflect.FieldNumber(1<<29) {
				end = "max"
			}
			parts = append(parts, fmt.Sprintf("ext %d-%s", r[0], end))
		}
		lines = append(lines, strings.TrimPrefix(string(md.FullName()), "org.eclipse.tahu.protobuf.")+": "+strings.Join(parts, "; "))
		nested := md.Messages()
		for i := 0; i < nested.Len(); i++ {
			walk(nested.Get(i))
		}
		if md.Enums().Len() != 0 || md.Extensions().Len() != 0 {
			t.Errorf("%s declares enums or extensions", md.FullName())
		}
	}
	walk(fd.Messages().Get(0))
	got := strings.Join(lines, "\n")
	if got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("schema differs from §6.4.1:\n got: %s\nwant: %s", g, w)
			}
		}
	}
}

func TestEncodeDeterministic(t *testing.T) {
	first, err := Encode(samplePayload())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ { // map order in WithProperties differs between runs
		b, err := Encode(samplePayload())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, first) {
			t.Fatalf("encoding %d differs:\n% x\n% x", i, b, first)
		}
	}
	p, err := Decode(first)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(p, samplePayload()) {
		t.Fatalf("decoded %v", p)
	}
	props := p.Metrics[0].GetProperties()
	if !reflect.DeepEqual(props.GetKeys(), []string{"model", "vendor"}) || len(props.GetValues()) != 2 ||
		props.Values[0].GetStringValue() != "X1" || props.Values[1].GetStringValue() != "ACME" ||
		DataType(props.Values[1].GetType()) != String {
		t.Fatalf("properties %v", props)
	}
}

func TestWithProperties(t *testing.T) {
	m := WithProperties(StringMetric("x", "y"), map[string]string{"b": "2", "a": "1", "": "empty key"})
	if got := m.GetProperties().GetKeys(); !reflect.DeepEqual(got, []string{"", "a", "b"}) {
		t.Fatalf("keys %q", got)
	}
	if WithProperties(m, map[string]string{"c": "3"}).GetProperties().GetKeys()[0] != "c" || len(m.Properties.Keys) != 1 {
		t.Fatalf("properties not replaced: %v", m.Properties)
	}
	if WithProperties(m, nil).Properties != nil {
		t.Fatalf("empty map left properties: %v", m.Properties)
	}
}

func TestEncodeDecodeLimits(t *testing.T) {
	if _, err := Encode(nil); err == nil {
		t.Fatal("Encode(nil) succeeded")
	}
	big := &Payload{Body: make([]byte, MaxPayloadBytes)}
	if _, err := Encode(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Encode of %d bytes of body: %v, want ErrTooLarge", MaxPayloadBytes, err)
	}
	fits := &Payload{Body: make([]byte, MaxPayloadBytes-4)} // tag + 3-byte length
	b, err := Encode(fits)
	if err != nil || len(b) != MaxPayloadBytes {
		t.Fatalf("Encode of a payload of exactly MaxPayloadBytes: %d bytes, %v", len(b), err)
	}
	if _, err := Decode(b); err != nil {
		t.Fatalf("Decode of exactly MaxPayloadBytes: %v", err)
	}
	if _, err := Decode(append(b, 0x18, 0x01)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Decode of MaxPayloadBytes+2: %v, want ErrTooLarge", err)
	}
	for _, bad := range [][]byte{{0x12}, {0x12, 0x05, 0x0a}, {0x08}, {0x0f}, {0x12, 0x02, 0x7a, 0x05}} {
		if _, err := Decode(bad); err == nil || errors.Is(err, ErrTooLarge) {
			t.Errorf("Decode(% x): %v, want a decode error", bad, err)
		}
	}
	if p, err := Decode(nil); err != nil || !proto.Equal(p, &Payload{}) {
		t.Fatalf("Decode(nil) = %v, %v; want an empty payload", p, err)
	}
}

func TestMetricValueAs(t *testing.T) {
	iv := func(v uint32) *Payload_Metric { return &Payload_Metric{Value: &Payload_Metric_IntValue{IntValue: v}} }
	lv := func(v uint64) *Payload_Metric { return &Payload_Metric{Value: &Payload_Metric_LongValue{LongValue: v}} }
	ds := &Payload_DataSet{NumOfColumns: proto.Uint64(0)}
	tpl := &Payload_Template{IsDefinition: proto.Bool(true)}
	cases := []struct {
		m    *Payload_Metric
		dt   DataType
		want any
	}{
		{iv(0xffffffff), Int8, int64(-1)}, // sign-extended, as most implementations send it
		{iv(0xff), Int8, int64(-1)},       // zero-extended 8 bits
		{iv(0x7f), Int8, int64(127)},
		{iv(0xffff8000), Int16, int64(-32768)},
		{iv(0x8000), Int16, int64(-32768)},
		{iv(0x80000000), Int32, int64(math.MinInt32)},
		{iv(200), UInt8, uint64(200)},
		{iv(65535), UInt16, uint64(65535)},
		{iv(7), Unknown, uint64(7)},
		{lv(math.MaxUint64), Int64, int64(-1)},
		{lv(math.MaxUint64), UInt64, uint64(math.MaxUint64)},
		{lv(math.MaxUint64), Unknown, uint64(math.MaxUint64)},
		{lv(1700000000123), DateTime, time.UnixMilli(1700000000123).UTC()},
		{lv(5), String, uint64(5)}, // datatype and field disagree: the field as it is
		{&Payload_Metric{Value: &Payload_Metric_FloatValue{FloatValue: 1.5}}, Float, 1.5},
		{&Payload_Metric{Value: &Payload_Metric_StringValue{StringValue: "u"}}, UUID, "u"},
		{&Payload_Metric{Value: &Payload_Metric_StringValue{StringValue: "t"}}, Text, "t"},
		{&Payload_Metric{Value: &Payload_Metric_BytesValue{BytesValue: []byte{1, 2}}}, File, []byte{1, 2}},
		{&Payload_Metric{Value: &Payload_Metric_DatasetValue{DatasetValue: ds}}, DataSet, ds},
		{&Payload_Metric{Value: &Payload_Metric_TemplateValue{TemplateValue: tpl}}, Template, tpl},
		{&Payload_Metric{IsNull: proto.Bool(true), Value: &Payload_Metric_StringValue{StringValue: "ignored"}}, String, nil},
		{&Payload_Metric{}, String, nil},
		{nil, Unknown, nil},
	}
	for i, c := range cases {
		got := MetricValueAs(c.m, c.dt)
		if tm, ok := c.want.(time.Time); ok {
			if g, ok := got.(time.Time); !ok || !g.Equal(tm) {
				t.Errorf("%d: %v as %v = %#v, want %v", i, c.m, c.dt, got, tm)
			}
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%d: %v as %v = %#v (%T), want %#v (%T)", i, c.m, c.dt, got, got, c.want, c.want)
		}
	}
	if got := MetricValue(nil); got != nil {
		t.Errorf("MetricValue(nil) = %v", got)
	}
}

func TestDataTypeString(t *testing.T) {
	for dt, want := range map[DataType]string{Unknown: "Unknown", Int8: "Int8", UInt64: "UInt64", DateTime: "DateTime", UUID: "UUID", PropertySetList: "PropertySetList", 22: "DataType(22)"} {
		if dt.String() != want {
			t.Errorf("%d: %q, want %q", uint32(dt), dt.String(), want)
		}
	}
	// The numbers of §6.4.16.
	nums := []DataType{Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Float, Double, Boolean, String, DateTime, Text, UUID, DataSet, Bytes, File, Template, PropertySet, PropertySetList}
	for i, dt := range nums {
		if uint32(dt) != uint32(i+1) {
			t.Errorf("%v = %d, want %d", dt, uint32(dt), i+1)
		}
	}
}

func TestTopic(t *testing.T) {
	cases := []struct {
		t                   MessageType
		group, node, device string
		want                string
	}{
		{NBIRTH, "plant", "gw1", "", "spBv1.0/plant/NBIRTH/gw1"},
		{NDEATH, "plant", "gw1", "", "spBv1.0/plant/NDEATH/gw1"},
		{NDATA, "plant", "gw1", "", "spBv1.0/plant/NDATA/gw1"},
		{NCMD, "plant", "gw1", "", "spBv1.0/plant/NCMD/gw1"},
		{DBIRTH, "plant", "gw1", "drive-7", "spBv1.0/plant/DBIRTH/gw1/drive-7"},
		{DDEATH, "plant", "gw1", "drive-7", "spBv1.0/plant/DDEATH/gw1/drive-7"},
		{DDATA, "Zürich line 2", "gw 1", "ドライブ", "spBv1.0/Zürich line 2/DDATA/gw 1/ドライブ"},
		{DCMD, "g", "n", "d", "spBv1.0/g/DCMD/n/d"},
	}
	for _, c := range cases {
		got := Topic(c.t, c.group, c.node, c.device)
		if got != c.want {
			t.Errorf("Topic(%s, %q, %q, %q) = %q, want %q", c.t, c.group, c.node, c.device, got, c.want)
		}
		typ, g, n, d, ok := ParseTopic(got)
		if !ok || typ != c.t || g != c.group || n != c.node || d != c.device {
			t.Errorf("ParseTopic(%q) = %s %q %q %q %v", got, typ, g, n, d, ok)
		}
	}
	if got := StateTopic("scada-1"); got != "spBv1.0/STATE/scada-1" {
		t.Errorf("StateTopic = %q", got)
	}
	if h, ok := ParseStateTopic("spBv1.0/STATE/scada-1"); !ok || h != "scada-1" {
		t.Errorf("ParseStateTopic = %q %v", h, ok)
	}
}

func TestParseTopicMalformed(t *testing.T) {
	for _, topic := range []string{
		"",
		"spBv1.0",
		"spBv1.0/",
		"spBv1.0/g",
		"spBv1.0/g/NBIRTH",
		"spBv1.0/g/NBIRTH/",       // empty node
		"spBv1.0//NBIRTH/n",       // empty group
		"spBv1.0/g/NBIRTH/n/d",    // device on a node message
		"spBv1.0/g/NCMD/n/d",      // device on a node message
		"spBv1.0/g/DBIRTH/n",      // device message without device
		"spBv1.0/g/DDATA/n/",      // empty device
		"spBv1.0/g/DDATA/n/d/x",   // too many elements
		"spBv1.0/g/NDATA/n/",      // trailing slash
		"spBv1.0/g/nbirth/n",      // message types are upper case
		"spBv1.0/g/NFOO/n",        // unknown type
		"spBv1.0/g/STATE/n",       // not an edge node type
		"spBv1.0/STATE/host",      // STATE: ParseStateTopic
		"spAv1.0/g/NBIRTH/n",      // Sparkplug A
		"spbv1.0/g/NBIRTH/n",      // namespace is case-sensitive
		"/spBv1.0/g/NBIRTH/n",     // leading slash
		"spBv1.0/+/NBIRTH/n",      // wildcards are filters, not topics
		"spBv1.0/g/NBIRTH/#",      //
		"spBv1.0/g/DDATA/n/+",     //
		"spBv1.0/g/+/n",           //
		"spBv1.0/g\xff/NBIRTH/n",  // invalid UTF-8
		"spBv1.0/g/NBIRTH/n\x00x", // U+0000
	} {
		if typ, g, n, d, ok := ParseTopic(topic); ok || typ != "" || g != "" || n != "" || d != "" {
			t.Errorf("ParseTopic(%q) = %q %q %q %q %v, want not ok", topic, typ, g, n, d, ok)
		}
	}
	for _, topic := range []string{"spBv1.0/STATE/", "spBv1.0/STATE", "spBv1.0/STATE/a/b", "spBv1.0/STATE/+", "spBv1.0/g/NBIRTH/n", "spAv1.0/STATE/h", "STATE/h"} {
		if h, ok := ParseStateTopic(topic); ok || h != "" {
			t.Errorf("ParseStateTopic(%q) = %q %v, want not ok", topic, h, ok)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"a", "plant 1", "gw-01.site_A", "Zürich", "工場", "STATE", "NBIRTH", "$SYS", "a\\b", "emoji🙂"} {
		if err := ValidID(id); err != nil {
			t.Errorf("ValidID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "a/b", "/", "a+", "+", "#", "a#b", "\xff", "a\xc3", "a\x00b"} {
		err := ValidID(id)
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidID(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}

func TestParseState(t *testing.T) {
	good := []struct {
		in   string
		want State
	}{
		{`{"online":true,"timestamp":1668114759262}`, State{true, 1668114759262}},
		{`{"online": false, "timestamp": 0}`, State{false, 0}},
		{" \n{\"timestamp\":5,\"online\":true,\"extra\":[1,2]}\n", State{true, 5}},
		{`{"online":true,"timestamp":9223372036854775807}`, State{true, math.MaxInt64}},
	}
	for _, c := range good {
		got, err := ParseState([]byte(c.in))
		if err != nil || got != c.want {
			t.Errorf("ParseState(%s) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{
		``,
		`null`,
		`[]`,
		`"online"`,
		`true`,
		`{}`,
		`{"online":true}`,
		`{"timestamp":1}`,
		`{"online":"true","timestamp":1}`,
		`{"online":1,"timestamp":1}`,
		`{"online":null,"timestamp":1}`,
		`{"online":true,"timestamp":null}`,
		`{"online":true,"timestamp":"1668114759262"}`,
		`{"online":true,"timestamp":1.5}`,
		`{"online":true,"timestamp":1e3}`,
		`{"online":true,"timestamp":-1}`,
		`{"online":true,"timestamp":9223372036854775808}`,
		`{"Online":true,"Timestamp":1}`,
		`{"online":true,"timestamp":1} x`,
		`{"online":true,"timestamp":1`,
	} {
		if got, err := ParseState([]byte(in)); !errors.Is(err, ErrBadState) || got != (State{}) {
			t.Errorf("ParseState(%s) = %+v, %v; want ErrBadState", in, got, err)
		}
	}
	for _, s := range []State{{true, 1700000000000}, {false, 1}} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ParseState(b); err != nil || got != s {
			t.Errorf("ParseState(%s) = %+v, %v", b, got, err)
		}
	}
}
