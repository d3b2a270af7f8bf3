package sparkplug

// sparkplug_b.pb.go is generated from sparkplug_b.proto and committed. To regenerate it
// (from this directory, or `go generate ./protocols/sparkplug` from the module root):
//
//	apt-get install -y protobuf-compiler    # protoc 3.21.12 (libprotoc 3.21.12)
//	GOBIN=/tmp/gobin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.8
//	PATH=/tmp/gobin:$PATH go generate ./protocols/sparkplug
//
// protoc-gen-go must match the google.golang.org/protobuf version in go.mod (v1.36.8).

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative sparkplug_b.proto
