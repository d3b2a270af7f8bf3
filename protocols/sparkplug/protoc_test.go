package sparkplug

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollcall-edge/rollcall/internal/testutil"

	"google.golang.org/protobuf/proto"
)

// protoc finds the protobuf compiler, the independent peer of these tests: skipped when
// it is missing, except in CI (CI=true), where that is a failure.
func protoc(t *testing.T) string {
	t.Helper()
	return testutil.NeedTool(t, "protoc", "protobuf-compiler")
}

// runProtoc runs protoc with args on the schema of this package, stdin from file.
func runProtoc(t *testing.T, file string, args ...string) []byte {
	t.Helper()
	bin := protoc(t)
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append(args, "--proto_path="+dir, "sparkplug_b.proto")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("protoc %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// TestProtocDecodes: protoc, given sparkplug_b.proto, decodes what Encode writes to the
// fields and values expected.
func TestProtocDecodes(t *testing.T) {
	b, err := Encode(samplePayload())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out := runProtoc(t, file, "--decode=org.eclipse.tahu.protobuf.Payload")
	// protoc's text format, indentation dropped.
	want := []string{
		`timestamp: 1700000000000`,
		`metrics {`, `name: "identity"`, `datatype: 12`,
		`properties {`, `keys: "model"`, `keys: "vendor"`,
		`values {`, `type: 12`, `string_value: "X1"`, `}`,
		`values {`, `type: 12`, `string_value: "ACME"`, `}`,
		`}`, `string_value: "ACME X1 0042"`, `}`,
		`metrics {`, `name: "Node Control/Rebirth"`, `datatype: 11`, `boolean_value: false`, `}`,
		`metrics {`, `name: "bdSeq"`, `datatype: 8`, `long_value: 3`, `}`,
		`metrics {`, `name: "registers"`, `datatype: 7`, `int_value: 4000000000`, `}`,
		`metrics {`, `name: "epoch"`, `datatype: 4`, `long_value: 18446744073709551615`, `}`,
		`metrics {`, `name: "temp"`, `datatype: 10`, `double_value: 21.5`, `}`,
		`metrics {`, `name: "seen"`, `datatype: 13`, `long_value: 1700000000123`, `}`,
		`metrics {`, `name: "fault"`, `datatype: 12`, `is_null: true`, `}`,
		`seq: 7`,
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		got = append(got, strings.TrimSpace(l))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("protoc --decode printed:\n%s\nwant (indentation aside):\n%s", out, strings.Join(want, "\n"))
	}
}

// TestProtocEncodes: what protoc encodes from a text payload, Decode reads.
func TestProtocEncodes(t *testing.T) {
	text := `timestamp: 1668114759262
seq: 0
metrics { name: "bdSeq" alias: 1 timestamp: 1668114759000 datatype: 8 long_value: 2 }
metrics { name: "level" datatype: 3 int_value: 4294967291 is_historical: true }
metrics { name: "ratio" datatype: 9 float_value: 0.25 }
metrics { name: "blob" datatype: 17 bytes_value: "\001\002" metadata { size: 2 md5: "x" } }
metrics { name: "table" datatype: 16 dataset_value { num_of_columns: 1 columns: "c" types: 7 rows { elements { int_value: 9 } } } }
`
	file := filepath.Join(t.TempDir(), "payload.txt")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	b := runProtoc(t, file, "--encode=org.eclipse.tahu.protobuf.Payload")
	p, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &Payload{
		Timestamp: proto.Uint64(1668114759262),
		Seq:       proto.Uint64(0),
		Metrics: []*Payload_Metric{
			{Name: proto.String("bdSeq"), Alias: proto.Uint64(1), Timestamp: proto.Uint64(1668114759000), Datatype: proto.Uint32(8), Value: &Payload_Metric_LongValue{LongValue: 2}},
			{Name: proto.String("level"), Datatype: proto.Uint32(3), IsHistorical: proto.Bool(true), Value: &Payload_Metric_IntValue{IntValue: 4294967291}},
			{Name: proto.String("ratio"), Datatype: proto.Uint32(9), Value: &Payload_Metric_FloatValue{FloatValue: 0.25}},
			{Name: proto.String("blob"), Datatype: proto.Uint32(17), Metadata: &Payload_MetaData{Size: proto.Uint64(2), Md5: proto.String("x")}, Value: &Payload_Metric_BytesValue{BytesValue: []byte{1, 2}}},
			{Name: proto.String("table"), Datatype: proto.Uint32(16), Value: &Payload_Metric_DatasetValue{DatasetValue: &Payload_DataSet{
				NumOfColumns: proto.Uint64(1), Columns: []string{"c"}, Types: []uint32{7},
				Rows: []*Payload_DataSet_Row{{Elements: []*Payload_DataSet_DataSetValue{{Value: &Payload_DataSet_DataSetValue_IntValue{IntValue: 9}}}}},
			}}},
		},
	}
	if !proto.Equal(p, want) {
		t.Fatalf("decoded %v\nwant %v", p, want)
	}
	if v := MetricValue(p.Metrics[1]); v != int64(-5) {
		t.Errorf("Int32 metric = %#v, want -5", v)
	}
	if v := MetricValue(p.Metrics[2]); v != 0.25 {
		t.Errorf("Float metric = %#v, want 0.25", v)
	}
	// Our encoding of the same message is byte for byte protoc's.
	ours, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, b) {
		t.Errorf("Encode differs from protoc --encode:\n% x\n% x", ours, b)
	}
}
