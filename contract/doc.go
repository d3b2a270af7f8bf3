// Package contract is rollcall's public MQTT contract, version 1, in one place: the
// instance and gateway records and their JSON codec, every topic and subscription
// filter (catalog, gateway status, the read-back marker, the consumer sync topic, the
// ACL filters that confine a gateway to its subtree), the slug rule for topic levels
// and the instance-id rule. docs/contract.md is its prose description.
//
// It imports only the standard library, so every side of the contract — the gateway's
// publisher and read-back, the embedded broker's access control, the registry, the
// consumer library, the HTTP API and the commands — builds on the same rules, and no
// other package builds a topic, a filter or an instance id of its own.
package contract
