package main

import (
	"strings"

	"github.com/rollcall-edge/rollcall/contract"
)

// shortID is an instance id as a person reads it: the one rule for the ids rollcall
// prints for people (the demo's screen and tables, watch's table, find's line, scan's
// table); --json output, the contract and the gateway keep full ids. It drops what is
// the same for many instances from the two forms of contract.InstanceID:
//
//   - <vendor>-<serial> (the device reports a serial number): without the vendor's slug,
//     "rollcall-firmware-sim-sim-0001" (vendor "Rollcall Firmware Sim", serial
//     "SIM-0001") → "sim-0001";
//   - <gateway>-<local> (no serial number): without the gateway's id,
//     "cell2-gw-bus1-u3" → "bus1-u3".
//
// An id in neither form (cut and hashed because it was long) is shown whole. Within
// one view, shortIDs shows whole the ids whose short forms would be ambiguous.
func shortID(id string, ident contract.Identity, gateway string) string {
	prefix := contract.Slug(gateway) + "-"
	if ident.Serial != "" {
		vendor := ident.Vendor
		if vendor == "" {
			vendor = contract.UnknownVendor
		}
		prefix = contract.Slug(vendor) + "-"
	}
	if rest, ok := strings.CutPrefix(id, prefix); ok && rest != "" {
		return rest
	}
	return id
}

// shortIDs are the short ids (shortID) of recs, by full id. Where two different ids
// would show the same short id (two vendors' drives with one serial number, two
// gateways' bus1-u3), or a short id is another instance's full id, those ids are shown
// whole, so that every id shown names one instance.
func shortIDs(recs []*contract.Record) map[string]string {
	short := make(map[string]string, len(recs))
	owners := map[string]map[string]bool{} // short id → the full ids that have it
	for _, r := range recs {
		s := shortID(r.ID, r.Identity, r.Gateway)
		short[r.ID] = s
		if owners[s] == nil {
			owners[s] = map[string]bool{}
		}
		owners[s][r.ID] = true
	}
	for id, s := range short {
		if _, isFull := short[s]; len(owners[s]) > 1 || (isFull && s != id) {
			short[id] = id
		}
	}
	return short
}

// resolveID reads an instance id typed by a person, full or short, against the
// instances recs: the full id of the one it names, or false when it names none of them.
func resolveID(typed string, recs []*contract.Record) (string, bool) {
	short := shortIDs(recs)
	if _, ok := short[typed]; ok {
		return typed, true
	}
	for id, s := range short {
		if s == typed {
			return id, true
		}
	}
	return "", false
}
